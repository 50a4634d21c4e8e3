/**
 * The registry client: one `RegistryClient` per host holds the connection pool,
 * the scheme (https, or http for insecure registries), the auth state (challenge,
 * credentials, cached tokens per scope) and the retry policy; `Repository` handles
 * speak the distribution API for one repository on top of its `send()`.
 */
import { isIP } from "node:net";
import { Readable } from "node:stream";
import type { Agent } from "undici";
import { RootstockError } from "../errors.js";
import { type AuthProvider, type Challenge, type Credential, fileAuth, parseChallenges } from "./auth.js";
import { RegistryError, registryErrorFor } from "./errors.js";
import {
  backoffDelay,
  headerValue,
  isRetryableStatus,
  isTransientError,
  networkError,
  readBounded,
  retryAfterMs,
  sleep,
} from "./http.js";
import { Http1Pool, type ResponseBody } from "./http1.js";
import { isInsecureRegistry } from "./registries-conf.js";
import { Repository } from "./repository.js";

// undici is loaded on the first connection: commands that never talk to a registry
// (export, digest, plan) do not pay ~0.1 s to load it.
type Undici = typeof import("undici");
let undici: Undici | undefined;
async function loadUndici(): Promise<void> {
  undici ??= await import("undici");
}
function http(): Undici {
  if (!undici) throw new RootstockError("INTERNAL", "registry client used before it connected");
  return undici;
}

export interface RegistryTimeouts {
  /** TCP/TLS connect. Default 10 s. */
  connectMs?: number;
  /** From request sent to response headers. Default 60 s. */
  headersMs?: number;
  /** Longest silence inside a response body. Default 60 s. */
  bodyMs?: number;
}

export interface RegistryOptions {
  /**
   * `--tls-verify=false`: try https without verifying the certificate, then plain
   * http (podman's behaviour). Undefined: ask registries.conf.
   */
  insecure?: boolean;
  /** Where credentials come from. Default: the auth files podman and docker use. */
  auth?: AuthProvider;
  /** Connections to this registry at once (others queue). Default 6. */
  concurrency?: number;
  timeouts?: RegistryTimeouts;
  /** Attempts after the first, for retryable failures (429, 5xx, resets). Default 5. */
  retries?: number;
  /** First backoff delay; doubles per attempt. Default 250 ms. */
  retryBaseDelayMs?: number;
  /** Environment for auth files and registries.conf (tests pass their own). */
  env?: NodeJS.ProcessEnv;
  userAgent?: string;
}

export type HttpMethod = "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE";

export interface SendRequest {
  method: HttpMethod;
  /** A path on the registry (`/v2/...`) or an absolute URL (upload locations). */
  url: string;
  headers?: Record<string, string>;
  /**
   * Bytes (re-sendable, so retries and auth challenges can send them again) or a
   * one-shot stream (then nothing is retried: `retry` must be false).
   */
  body?: Uint8Array | string | AsyncIterable<Uint8Array>;
  /** Token scopes this request needs, e.g. `repository:foo:pull`. */
  scopes: string[];
  /** Statuses the caller handles; anything else becomes a RegistryError. */
  expect: number[];
  /** Names the target in errors: `host/repo`, `host/repo:tag`, `host/repo@digest`. */
  where: string;
  /** Retry on resets and 429/5xx. Default: true. */
  retry?: boolean;
}

/** What `send` answers: undici's response, or http1.ts's of the same shape. */
export interface Response {
  statusCode: number;
  /** Body chunks are valid only until the next read (http1.ts); undici's are the reader's to keep. */
  borrowed?: boolean;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody;
}

const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY = 64 * 1024;
const MAX_TOKEN_BODY = 1024 * 1024;

interface CachedToken {
  token: string;
  expiresAt: number;
}

export class RegistryClient {
  readonly host: string;
  readonly retries: number;
  readonly retryBaseDelayMs: number;
  private readonly options: RegistryOptions;
  private readonly auth: AuthProvider;
  private base: Promise<{ url: URL }> | undefined;
  /** `--tls-verify=false` or registries.conf: https unverified, falling back to http. */
  private insecure = false;
  private pool: Http1Pool | undefined;
  private agent: Promise<Agent> | undefined;
  private challenge: Challenge | undefined;
  private credential: Promise<Credential | undefined> | undefined;
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  /** Set when the registry refused a multi-range request: ask one range at a time from then on. */
  multiRangeUnsupported = false;

  /** `host` is `name[:port]`, as in an image reference (`127.0.0.1:5000`). */
  constructor(host: string, options: RegistryOptions = {}) {
    if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/.test(host)) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `registry host: not a host[:port]: ${JSON.stringify(host)}`,
      );
    }
    this.host = host;
    this.options = options;
    this.auth = options.auth ?? fileAuth(options.env);
    this.retries = options.retries ?? 5;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 250;
  }

  repository(name: string): Repository {
    if (!/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(name)) {
      throw new RootstockError("INVALID_ARGUMENT", `repository name: not valid: ${JSON.stringify(name)}`);
    }
    return new Repository(this, name);
  }

  /** Checks the registry answers the v2 API; learns its scheme and auth challenge. */
  async ping(): Promise<{ scheme: "https" | "http"; auth: string }> {
    const { url } = await this.connection();
    return {
      scheme: url.protocol === "http:" ? "http" : "https",
      auth: this.challenge?.scheme ?? "none",
    };
  }

  /** Closes idle connections; pending requests finish first. */
  async close(): Promise<void> {
    this.base = undefined;
    this.pool?.close();
    this.pool = undefined;
    const agent = this.agent;
    this.agent = undefined;
    if (agent) await (await agent.catch(() => undefined))?.close();
  }

  /**
   * Whether a streamed body of known length sent to `url` (a path or an absolute
   * URL) is written chunk by chunk, each write finished before the next chunk is
   * asked for (plain http: http1.ts), so its source may lend its chunks.
   */
  async writesBodiesInTurn(url: string): Promise<boolean> {
    const { url: base } = await this.connection();
    return new URL(url, base).protocol === "http:";
  }

  /**
   * One HTTP exchange, no retries or redirects: plain http through our own client
   * (http1.ts: its bodies are borrowed), https and streams of unknown length through
   * undici (loaded then).
   */
  private async exchange(
    url: URL,
    method: HttpMethod,
    headers: Record<string, string>,
    body?: SendRequest["body"],
  ): Promise<Response> {
    if (url.protocol === "http:") {
      if (body === undefined || typeof body === "string" || body instanceof Uint8Array) {
        return this.http1().request(method, url, headers, body);
      }
      const length = Number(headers["content-length"]);
      if (Number.isSafeInteger(length))
        return this.http1().request(method, url, headers, { chunks: body, length });
    }
    const dispatcher = await this.undiciAgent();
    return http().request(url, {
      method,
      headers,
      body:
        body === undefined || typeof body === "string" || body instanceof Uint8Array
          ? body
          : Readable.from(body, { objectMode: false }),
      dispatcher,
    });
  }

  private http1(): Http1Pool {
    const t = this.options.timeouts ?? {};
    this.pool ??= new Http1Pool({
      connections: this.options.concurrency ?? 6,
      connectMs: t.connectMs ?? 10_000,
      headersMs: t.headersMs ?? 60_000,
      bodyMs: t.bodyMs ?? 60_000,
    });
    return this.pool;
  }

  private connection(): Promise<{ url: URL }> {
    this.base ??= this.resolveBase().catch((err) => {
      this.base = undefined;
      throw err;
    });
    return this.base;
  }

  /** undici's pool for https (and the rare request http1.ts does not take), made on first use. */
  private undiciAgent(): Promise<Agent> {
    this.agent ??= loadUndici().then(() => {
      const t = this.options.timeouts ?? {};
      return new (http().Agent)({
        connections: this.options.concurrency ?? 6,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: t.headersMs ?? 60_000,
        bodyTimeout: t.bodyMs ?? 60_000,
        connect: { timeout: t.connectMs ?? 10_000, rejectUnauthorized: !this.insecure },
      });
    });
    return this.agent;
  }

  /** https, or for an insecure registry https without verification falling back to http. */
  private async resolveBase(): Promise<{ url: URL }> {
    this.insecure = this.options.insecure ?? (await isInsecureRegistry(this.host, this.options.env));
    const schemes = this.insecure ? ["https", "http"] : ["https"];
    let lastError: unknown;
    for (const scheme of schemes) {
      const url = new URL(`${scheme}://${this.host}/`);
      // With a fallback to come, a TLS handshake decides: a plain-http port fails it
      // at once (and a refused port refuses both), without loading undici.
      if (scheme === "https" && this.insecure) {
        const failure = await tlsHandshakeFailure(url, this.options.timeouts?.connectMs ?? 10_000);
        if (failure) {
          lastError = networkError(`${this.host}: https`, failure);
          continue;
        }
      }
      try {
        await this.pingAt(url, this.retries);
        return { url };
      } catch (err) {
        lastError = err;
        if (!(err instanceof RootstockError && err.code === "NETWORK")) break;
      }
    }
    throw lastError;
  }

  private async pingAt(base: URL, retries: number): Promise<void> {
    const where = this.host;
    let attempt = 0;
    for (;;) {
      let res: Response;
      try {
        res = await this.exchange(new URL("/v2/", base), "GET", this.baseHeaders());
      } catch (err) {
        // Only connection-level failures are retried.
        if (isTransientError(err) && attempt < retries) {
          await sleep(backoffDelay(attempt++, this.retryBaseDelayMs));
          continue;
        }
        throw networkError(`${where}: ${base.protocol.slice(0, -1)}`, err);
      }
      const text = (await readBounded(res.body, MAX_ERROR_BODY, `${where}: /v2/`)).toString("utf8");
      if (res.statusCode === 200) return;
      if (res.statusCode === 401) {
        this.challenge = pickChallenge(parseChallenges(res.headers["www-authenticate"]));
        return;
      }
      if (isRetryableStatus(res.statusCode) && attempt < retries) {
        await sleep(
          retryAfterMs(res.headers["retry-after"]) ?? backoffDelay(attempt++, this.retryBaseDelayMs),
        );
        continue;
      }
      throw registryErrorFor(`${where}: not an OCI registry`, res.statusCode, text);
    }
  }

  private baseHeaders(): Record<string, string> {
    return {
      "user-agent": this.options.userAgent ?? "rootstock",
      "docker-distribution-api-version": "registry/2.0",
    };
  }

  private credentials(): Promise<Credential | undefined> {
    this.credential ??= this.auth.credentialsFor(this.host);
    return this.credential;
  }

  /** The Authorization header for a request to the registry's own origin, if any. */
  private async authorization(scopes: string[]): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === "basic") return (await this.credentials())?.basicHeader();
    if (challenge.scheme === "bearer") return `Bearer ${(await this.token(challenge, scopes)).token}`;
    return undefined;
  }

  private tokenKey(challenge: Challenge, scopes: string[]): string {
    return [challenge.params.realm, challenge.params.service, ...[...scopes].sort()].join("|");
  }

  private token(challenge: Challenge, scopes: string[]): Promise<CachedToken> {
    const key = this.tokenKey(challenge, scopes);
    const cached = this.tokens.get(key);
    if (cached) {
      return cached.then((t) => {
        if (t.expiresAt > Date.now()) return t;
        this.tokens.delete(key);
        return this.token(challenge, scopes);
      });
    }
    const fresh = this.fetchToken(challenge, scopes);
    this.tokens.set(key, fresh);
    fresh.catch(() => this.tokens.delete(key));
    return fresh;
  }

  private forgetToken(scopes: string[]): void {
    if (this.challenge) this.tokens.delete(this.tokenKey(this.challenge, scopes));
  }

  private async fetchToken(challenge: Challenge, scopes: string[]): Promise<CachedToken> {
    const realm = challenge.params.realm;
    if (!realm) {
      throw new RootstockError("UNAUTHORIZED", `${this.host}: bearer challenge without a realm`);
    }
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RootstockError(
        "UNAUTHORIZED",
        `${this.host}: bearer realm is not a URL: ${JSON.stringify(realm)}`,
      );
    }
    if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
    for (const scope of scopes) url.searchParams.append("scope", scope);
    const credential = await this.credentials();
    const headers: Record<string, string> = { ...this.baseHeaders() };
    if (credential) {
      headers.authorization = credential.basicHeader();
      url.searchParams.set("account", credential.username);
    }
    const where = `${this.host}: token from ${url.origin}`;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await this.exchange(url, "GET", headers);
      } catch (err) {
        if (isTransientError(err) && attempt < this.retries) {
          await sleep(backoffDelay(attempt, this.retryBaseDelayMs));
          continue;
        }
        throw networkError(where, err);
      }
      const text = (await readBounded(res.body, MAX_TOKEN_BODY, where)).toString("utf8");
      if (isRetryableStatus(res.statusCode) && attempt < this.retries) {
        await sleep(retryAfterMs(res.headers["retry-after"]) ?? backoffDelay(attempt, this.retryBaseDelayMs));
        continue;
      }
      if (res.statusCode === 401 || res.statusCode === 403) {
        throw new RootstockError(
          "UNAUTHORIZED",
          `${where}: ${credential ? `credentials for ${credential.username} refused` : "anonymous access refused"} (${res.statusCode})`,
        );
      }
      if (res.statusCode !== 200) throw registryErrorFor(where, res.statusCode, text);
      let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
      try {
        body = JSON.parse(text);
      } catch {
        throw new RootstockError("INVALID_FORMAT", `${where}: token response is not JSON`);
      }
      const token = typeof body.token === "string" ? body.token : body.access_token;
      if (typeof token !== "string" || token === "") {
        throw new RootstockError("INVALID_FORMAT", `${where}: token response has no token`);
      }
      // Spec default lifetime is 60 s; refresh a little early so a request never carries a stale one.
      const lifetime = typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : 60;
      const issued = typeof body.issued_at === "string" ? Date.parse(body.issued_at) : Number.NaN;
      const start = Number.isNaN(issued) ? Date.now() : Math.min(Date.now(), issued);
      return { token, expiresAt: start + Math.max(1, lifetime - 10) * 1000 };
    }
  }

  /**
   * Sends one request and returns a response with a status in `expect` (its body
   * must be consumed or dumped). Handles auth challenges, redirects (dropping
   * Authorization when they leave the registry's origin, as to S3), and retries
   * of resets and 429/5xx with backoff.
   */
  async send(req: SendRequest): Promise<Response> {
    const { url: base } = await this.connection();
    const retry = req.retry ?? true;
    if (
      retry &&
      req.body !== undefined &&
      typeof req.body !== "string" &&
      !(req.body instanceof Uint8Array)
    ) {
      throw new RootstockError("INTERNAL", `${req.where}: a streamed body cannot be retried`);
    }
    let url = new URL(req.url, base);
    let attempt = 0;
    let authRetried = false;
    let redirects = 0;
    for (;;) {
      const sameOrigin = url.origin === base.origin;
      const headers: Record<string, string> = { ...this.baseHeaders(), ...req.headers };
      if (sameOrigin) {
        const authorization = await this.authorization(req.scopes);
        if (authorization) headers.authorization = authorization;
      }
      let res: Response;
      try {
        res = await this.exchange(url, req.method, headers, req.body);
      } catch (err) {
        // Our own errors (a streamed body that failed its size check) pass through as they are.
        if (err instanceof RootstockError) throw err;
        if (retry && isTransientError(err) && attempt < this.retries) {
          await sleep(backoffDelay(attempt++, this.retryBaseDelayMs));
          continue;
        }
        throw networkError(`${req.where}: ${req.method}`, err);
      }
      const status = res.statusCode;
      const resendable =
        req.body === undefined || typeof req.body === "string" || req.body instanceof Uint8Array;
      if (status === 401 && sameOrigin && !authRetried && resendable && !req.expect.includes(401)) {
        const challenge = pickChallenge(parseChallenges(res.headers["www-authenticate"]));
        await res.body.dump();
        if (challenge) {
          // A first challenge, a changed one, or an expired/insufficient token: fetch anew once.
          this.forgetToken(req.scopes);
          this.challenge = challenge;
          authRetried = true;
          continue;
        }
        throw new RegistryError(
          req.where,
          401,
          "UNAUTHORIZED",
          "authentication required, no challenge given",
        );
      }
      if (
        status >= 300 &&
        status < 400 &&
        status !== 304 &&
        (req.method === "GET" || req.method === "HEAD")
      ) {
        const location = headerValue(res.headers, "location");
        await res.body.dump();
        if (location && !req.expect.includes(status)) {
          if (++redirects > MAX_REDIRECTS) {
            throw new RegistryError(req.where, status, undefined, "too many redirects");
          }
          url = new URL(location, url);
          continue;
        }
        if (!req.expect.includes(status)) {
          throw new RegistryError(req.where, status, undefined, "redirect without Location");
        }
      }
      if (req.expect.includes(status)) return res;
      if (retry && isRetryableStatus(status) && attempt < this.retries) {
        await res.body.dump();
        await sleep(
          retryAfterMs(res.headers["retry-after"]) ?? backoffDelay(attempt++, this.retryBaseDelayMs),
        );
        continue;
      }
      const text =
        req.method === "HEAD"
          ? ""
          : (await readBounded(res.body, MAX_ERROR_BODY, req.where).catch(() => Buffer.alloc(0))).toString(
              "utf8",
            );
      if (req.method === "HEAD") await res.body.dump();
      throw registryErrorFor(req.where, status, text);
    }
  }
}

/** Bearer beats Basic when a registry offers both; other schemes are not supported. */
function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic");
}

/**
 * Why a TLS handshake with `url`'s host fails (the certificate not verified), or
 * undefined when it succeeds.
 */
async function tlsHandshakeFailure(url: URL, timeoutMs: number): Promise<Error | undefined> {
  const tls = await import("node:tls");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve) => {
    const socket = tls.connect({
      host,
      port: Number(url.port || 443),
      ...(isIP(host) ? {} : { servername: host }),
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    });
    const done = (err?: Error) => {
      socket.destroy();
      resolve(err);
    };
    socket.setTimeout(timeoutMs, () =>
      done(Object.assign(new Error("TLS handshake timed out"), { code: "ETIMEDOUT" })),
    );
    socket.once("secureConnect", () => done());
    socket.once("error", (err) => done(err));
  });
}
