/**
 * HTTP plumbing shared by the client: which failures are worth retrying, backoff,
 * and reading bounded bodies. No registry logic here.
 */
import { RootstockError } from "../errors.js";

const TRANSIENT_CODES = new Set([
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
]);

/** A connection-level failure (reset, refused, timeout, premature close): retrying may help. */
export function isTransientError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    if (e instanceof AggregateError && e.errors.some((inner) => isTransientError(inner))) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && TRANSIENT_CODES.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** HTTP statuses a registry answers when trying again later may succeed. */
export function isRetryableStatus(status: number): boolean {
  return (
    status === 408 || status === 429 || status === 500 || status === 502 || status === 503 || status === 504
  );
}

/** Short description of a connection error for a one-line message (no headers, no secrets). */
export function describeNetworkError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 4; depth++) {
    if (e instanceof AggregateError && e.errors[0]) e = e.errors[0];
    const code = (e as { code?: unknown }).code;
    const message = (e as { message?: unknown }).message;
    const text = [typeof code === "string" ? code : "", typeof message === "string" ? message : ""]
      .filter(Boolean)
      .join(" ");
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
    e = (e as { cause?: unknown }).cause;
  }
  return parts.join(": ") || String(err);
}

export function networkError(where: string, err: unknown): RootstockError {
  return new RootstockError("NETWORK", `${where}: ${describeNetworkError(err)}`, { cause: err });
}

/** Exponential backoff with jitter: base·2^attempt, ±25 %, capped. */
export function backoffDelay(attempt: number, baseMs: number, capMs = 10_000): number {
  const raw = Math.min(capMs, baseMs * 2 ** attempt);
  return Math.round(raw * (0.75 + Math.random() * 0.5));
}

/** Retry-After as milliseconds (seconds or HTTP date), capped; undefined when absent or bad. */
export function retryAfterMs(value: string | string[] | undefined, capMs = 30_000): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Math.min(capMs, Number(v.trim()) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.min(capMs, Math.max(0, at - Date.now()));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads a body into memory, refusing more than `max` bytes (manifests, errors, tokens). */
export async function readBounded(
  body: AsyncIterable<Uint8Array>,
  max: number,
  what: string,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max) {
      throw new RootstockError("INVALID_FORMAT", `${what}: larger than the ${max}-byte limit`);
    }
    // A copy: a plain-http body (http1.ts) lends its chunks only until the next read.
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks, size);
}

export function headerValue(
  headers: Record<string, string | string[] | undefined>,
  name: string,
): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Drops a response body we will not read (closing its connection). The listener
 * keeps the abort from surfacing as an uncaught 'error' when nobody iterates it.
 */
export function discardBody(body: {
  destroyed: boolean;
  destroy(): unknown;
  on(e: "error", f: () => void): unknown;
}) {
  if (body.destroyed) return;
  body.on("error", () => {});
  body.destroy();
}
