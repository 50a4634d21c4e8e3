import { createHash, type Hash } from "node:crypto";
import { RootstockError } from "../errors.js";

/** A content digest in OCI form: `sha256:` followed by 64 lowercase hex digits. */
export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export const EMPTY_SHA256: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

export function isDigest(value: unknown): value is Digest {
  return typeof value === "string" && DIGEST_RE.test(value);
}

/** Validates a digest string; `what` names the field in the error. */
export function parseDigest(value: unknown, what = "digest"): Digest {
  if (typeof value === "string" && DIGEST_RE.test(value)) return value as Digest;
  if (
    typeof value === "string" &&
    /^[a-z0-9]+([+._-][a-z0-9]+)*:/.test(value) &&
    !value.startsWith("sha256:")
  ) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `${what}: unsupported digest algorithm in ${JSON.stringify(value)}`,
    );
  }
  throw new RootstockError("INVALID_FORMAT", `${what}: not a sha256 digest: ${JSON.stringify(value)}`);
}

/** The 64 hex digits of a digest, as used in blob paths. */
export function digestHex(digest: Digest): string {
  return digest.slice(7);
}

export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Incremental sha256 that also counts bytes: the building block of every verified stream. */
export class Digester {
  private readonly hash: Hash = createHash("sha256");
  size = 0;

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }

  digest(): Digest {
    return `sha256:${this.hash.digest("hex")}`;
  }
}

/**
 * The Digester interface for a stream that verifies itself (see markVerified):
 * counts bytes and reports the digest the stream promised, so the usual size and
 * digest checks still run on it without hashing its bytes a second time.
 */
export class TrustedDigester {
  size = 0;
  constructor(private readonly promised: Digest) {}

  update(chunk: Uint8Array): void {
    this.size += chunk.length;
  }

  digest(): Digest {
    return this.promised;
  }
}

const VERIFIES = Symbol("rootstock.verifies");

/**
 * Marks `stream` as one that checks its own bytes: it throws at its end unless
 * what it yielded hashes to `digest`. A consumer that only needs those bytes to be
 * `digest` (storing them under it) may then count instead of hashing again. A
 * wrapper loses the mark, so the default stays: hash.
 */
export function markVerified<T extends AsyncIterable<Uint8Array>>(stream: T, digest: Digest): T {
  return Object.assign(stream, { [VERIFIES]: digest });
}

/** The digest a marked stream verifies itself against (see markVerified), else undefined. */
export function verifiedDigestOf(source: unknown): Digest | undefined {
  return typeof source === "object" && source !== null
    ? ((source as { [VERIFIES]?: Digest })[VERIFIES] ?? undefined)
    : undefined;
}

/**
 * Checks a finished stream against what named it. Throws DIGEST_MISMATCH or
 * SIZE_MISMATCH naming `what`.
 */
export function verifyDigest(
  actual: { digest: Digest; size: number },
  expected: { digest: Digest; size?: number },
  what: string,
): void {
  if (expected.size !== undefined && actual.size !== expected.size) {
    throw new RootstockError("SIZE_MISMATCH", `${what}: expected ${expected.size} bytes, got ${actual.size}`);
  }
  if (actual.digest !== expected.digest) {
    throw new RootstockError(
      "DIGEST_MISMATCH",
      `${what}: content hashes to ${actual.digest}, expected ${expected.digest}`,
    );
  }
}

/** Passes chunks through while hashing them; call `check()` after the source ends. */
export async function* digestingStream(
  source: AsyncIterable<Uint8Array>,
  digester: Digester,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    digester.update(chunk);
    yield chunk;
  }
}
