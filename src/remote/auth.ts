/**
 * Who we are to a registry: credentials (never printed, never logged, never sent to
 * another origin) and the parsing of `WWW-Authenticate` challenges. Credentials come
 * from the same files podman, skopeo and docker read, in containers/image's order:
 * `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
 * `~/.config/containers/auth.json`, `~/.docker/config.json`.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { RootstockError } from "../errors.js";

/** A username and secret. The secret is only reachable through `basicHeader()`. */
export class Credential {
  readonly username: string;
  readonly #secret: string;

  constructor(username: string, secret: string) {
    this.username = username;
    this.#secret = secret;
  }

  /** `Basic base64(user:secret)`, for the registry's origin or its token realm only. */
  basicHeader(): string {
    return `Basic ${Buffer.from(`${this.username}:${this.#secret}`).toString("base64")}`;
  }

  /** Serialises without the secret, so a logged object never shows it. */
  toJSON(): { username: string; secret: string } {
    return { username: this.username, secret: "<redacted>" };
  }

  toString(): string {
    return `Credential(${this.username}, <redacted>)`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Where credentials for a registry host come from. */
export interface AuthProvider {
  /** Credentials for `host` (e.g. `127.0.0.1:5000`) and repository, or undefined for anonymous. */
  credentialsFor(host: string, repository?: string): Promise<Credential | undefined>;
}

export const anonymousAuth: AuthProvider = {
  credentialsFor: async () => undefined,
};

/** The same credentials for every host (e.g. from `--creds user:pass`). */
export function staticAuth(username: string, secret: string): AuthProvider {
  const credential = new Credential(username, secret);
  return { credentialsFor: async () => credential };
}

/** The auth files containers/image reads, in its order (the first file naming the host wins). */
export function authFilePaths(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.REGISTRY_AUTH_FILE) return [env.REGISTRY_AUTH_FILE];
  const home = env.HOME ?? homedir();
  const paths: string[] = [];
  if (env.XDG_RUNTIME_DIR) paths.push(join(env.XDG_RUNTIME_DIR, "containers", "auth.json"));
  paths.push(join(home, ".config", "containers", "auth.json"));
  paths.push(join(env.DOCKER_CONFIG ?? join(home, ".docker"), "config.json"));
  return paths;
}

interface AuthFileEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
}

/**
 * Credentials from auth files. Keys may be a host (`127.0.0.1:5000`), a URL
 * (`https://host/v1/`) or a repository prefix (`host/ns/repo`, most specific wins).
 * Credential helpers (`credHelpers`, `credsStore`) are not run.
 */
export function fileAuth(env: NodeJS.ProcessEnv = process.env): AuthProvider {
  const cache = new Map<string, Record<string, AuthFileEntry> | undefined>();
  const load = async (path: string): Promise<Record<string, AuthFileEntry> | undefined> => {
    if (cache.has(path)) return cache.get(path);
    let auths: Record<string, AuthFileEntry> | undefined;
    try {
      const text = await readFile(path, "utf8");
      let doc: { auths?: Record<string, AuthFileEntry> };
      try {
        doc = JSON.parse(text);
      } catch (err) {
        throw new RootstockError("INVALID_FORMAT", `${path}: not valid JSON`, { cause: err });
      }
      auths = doc.auths && typeof doc.auths === "object" ? doc.auths : {};
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    cache.set(path, auths);
    return auths;
  };
  return {
    async credentialsFor(host, repository) {
      for (const path of authFilePaths(env)) {
        const auths = await load(path);
        if (!auths) continue;
        const entry = pickEntry(auths, host, repository);
        if (entry) return decodeEntry(entry, path, host);
      }
      return undefined;
    },
  };
}

function normalizeKey(key: string): string {
  return key
    .replace(/^https?:\/\//, "")
    .replace(/\/v[12]\/?$/, "")
    .replace(/\/+$/, "");
}

function pickEntry(
  auths: Record<string, AuthFileEntry>,
  host: string,
  repository: string | undefined,
): AuthFileEntry | undefined {
  const wanted = repository ? `${host}/${repository}` : host;
  let best: { key: string; entry: AuthFileEntry } | undefined;
  for (const [rawKey, entry] of Object.entries(auths)) {
    const key = normalizeKey(rawKey);
    const matches =
      key === host || (wanted.startsWith(`${key}/`) && key.startsWith(`${host}/`)) || key === wanted;
    if (matches && (!best || key.length > best.key.length)) best = { key, entry };
  }
  return best?.entry;
}

function decodeEntry(entry: AuthFileEntry, path: string, host: string): Credential | undefined {
  if (typeof entry.auth === "string" && entry.auth !== "") {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw new RootstockError(
        "INVALID_FORMAT",
        `${path}: auths["${host}"].auth: not base64 of user:password`,
      );
    }
    return new Credential(decoded.slice(0, colon), decoded.slice(colon + 1));
  }
  if (typeof entry.username === "string" && typeof entry.password === "string") {
    return new Credential(entry.username, entry.password);
  }
  return undefined;
}

/** One `WWW-Authenticate` challenge: scheme (lower case) and its parameters. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` value (or several): `Bearer realm="...",service="...",
 * scope="..."`, `Basic realm="..."`. Parameter names are lower-cased.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const values = Array.isArray(header) ? header : [header];
  const challenges: Challenge[] = [];
  for (const value of values) {
    let i = 0;
    let current: Challenge | undefined;
    const s = value;
    while (i < s.length) {
      while (i < s.length && (s[i] === " " || s[i] === ",")) i++;
      const tokenMatch = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(s.slice(i));
      if (!tokenMatch) break;
      const token = tokenMatch[0];
      let j = i + token.length;
      while (j < s.length && s[j] === " ") j++;
      if (s[j] === "=" && current) {
        // auth-param: name=value or name="quoted"
        j++;
        while (j < s.length && s[j] === " ") j++;
        let val = "";
        if (s[j] === '"') {
          j++;
          while (j < s.length && s[j] !== '"') {
            if (s[j] === "\\" && j + 1 < s.length) j++;
            val += s[j];
            j++;
          }
          j++;
        } else {
          const m = /^[^,\s]*/.exec(s.slice(j));
          val = m ? m[0] : "";
          j += val.length;
        }
        current.params[token.toLowerCase()] = val;
        i = j;
      } else {
        current = { scheme: token.toLowerCase(), params: {} };
        challenges.push(current);
        i = i + token.length;
      }
    }
  }
  return challenges;
}

/** `repository:NAME:pull` or `repository:NAME:pull,push`. */
export function repositoryScope(name: string, actions: readonly ("pull" | "push" | "delete")[]): string {
  return `repository:${name}:${actions.join(",")}`;
}
