/**
 * Which registries are insecure (plain http, or https without verification), read
 * from containers-registries.conf(5) as podman does: `CONTAINERS_REGISTRIES_CONF`,
 * else `~/.config/containers/registries.conf` when it exists, else
 * `/etc/containers/registries.conf`. Only what decides insecurity is read: v2
 * `[[registry]]` tables (`location`, `prefix`, `insecure`) and v1
 * `[registries.insecure] registries = [...]`; the drop-in directory is not.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { RootstockError } from "../errors.js";

export function registriesConfPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CONTAINERS_REGISTRIES_CONF) return env.CONTAINERS_REGISTRIES_CONF;
  const user = join(env.HOME ?? homedir(), ".config", "containers", "registries.conf");
  return existsSync(user) ? user : "/etc/containers/registries.conf";
}

/** Hosts (or host/path prefixes) marked insecure in a registries.conf text. */
export function parseInsecureRegistries(text: string, path = "registries.conf"): string[] {
  const insecure: string[] = [];
  let table = "";
  let entry: { location?: string; prefix?: string; insecure?: boolean } | undefined;
  const flush = () => {
    if (entry?.insecure) {
      const where = entry.prefix ?? entry.location;
      if (where) insecure.push(where);
    }
    entry = undefined;
  };
  // Arrays may span lines in TOML: join continuation lines of `key = [ ... ]` first.
  const lines = joinArrays(text.split("\n"));
  lines.forEach((raw, index) => {
    const line = stripComment(raw).trim();
    if (line === "") return;
    const header = /^\[\[?\s*([A-Za-z0-9_."-]+)\s*\]\]?$/.exec(line);
    if (header) {
      flush();
      table = header[1]!.replace(/"/g, "");
      if (line.startsWith("[[") && table === "registry") entry = {};
      return;
    }
    const kv = /^([A-Za-z0-9_-]+)\s*=\s*(.+)$/.exec(line);
    if (!kv)
      throw new RootstockError(
        "INVALID_FORMAT",
        `${path}:${index + 1}: cannot parse ${JSON.stringify(line)}`,
      );
    const key = kv[1]!;
    const value = kv[2]!.trim();
    if (entry && table === "registry") {
      if (key === "location" || key === "prefix") entry[key] = parseString(value, path, index);
      else if (key === "insecure") entry.insecure = value === "true";
    } else if (table === "registries.insecure" && key === "registries") {
      insecure.push(...parseStringArray(value, path, index));
    }
  });
  flush();
  return insecure;
}

function stripComment(line: string): string {
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"' && line[i - 1] !== "\\") inString = !inString;
    else if (c === "#" && !inString) return line.slice(0, i);
  }
  return line;
}

function joinArrays(lines: string[]): string[] {
  const out: string[] = [];
  let pending: string | undefined;
  for (const line of lines) {
    const text = stripComment(line);
    if (pending !== undefined) {
      pending += ` ${text.trim()}`;
      if (text.includes("]")) {
        out.push(pending);
        pending = undefined;
      } else out.push(""); // keep line numbers
      continue;
    }
    if (/=\s*\[[^\]]*$/.test(text)) pending = text;
    else out.push(line);
  }
  if (pending !== undefined) out.push(pending);
  return out;
}

function parseString(value: string, path: string, index: number): string {
  const m = /^"((?:[^"\\]|\\.)*)"$|^'([^']*)'$/.exec(value);
  if (!m) throw new RootstockError("INVALID_FORMAT", `${path}:${index + 1}: expected a string, got ${value}`);
  return m[1] ?? m[2] ?? "";
}

function parseStringArray(value: string, path: string, index: number): string[] {
  const m = /^\[(.*)\]$/.exec(value);
  if (!m) throw new RootstockError("INVALID_FORMAT", `${path}:${index + 1}: expected an array, got ${value}`);
  return m[1]!
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => parseString(s, path, index));
}

/** Whether `host` (with `repository`) matches an insecure location or prefix. */
export function matchesInsecure(insecure: readonly string[], host: string, repository = ""): boolean {
  const full = repository ? `${host}/${repository}` : host;
  return insecure.some((loc) => {
    if (loc.startsWith("*.")) return host.endsWith(loc.slice(1));
    return loc === host || full === loc || full.startsWith(`${loc}/`);
  });
}

/** Reads the effective registries.conf; a missing file means nothing is insecure. */
export async function isInsecureRegistry(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<boolean> {
  const path = registriesConfPath(env);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
  return matchesInsecure(parseInsecureRegistries(text, path), host);
}
