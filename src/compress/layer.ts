/**
 * The one interface the rest of rootstock uses for layer blobs: encode a tar stream
 * as tar+gzip, tar+zstd or zstd:chunked, and decode any of them back to the tar,
 * verified against the blob digest and diff_id.
 */
import { createGunzip } from "node:zlib";
import { RootstockError } from "../errors.js";
import { type Digest, Digester } from "../oci/digest.js";
import type { ProgressSink } from "../progress.js";
import { writeChunksToFile } from "../tar/writer.js";
import { encodeChunked, MEDIA_TYPE_TAR_ZSTD } from "./chunked-writer.js";
import { parseChunkedAnnotations } from "./footer.js";
import { encodeGzip } from "./gzip.js";
import type { Toc } from "./toc.js";
import { ZstdStreamDecoder, zstdBinding } from "./zstd.js";

export const MEDIA_TYPE_TAR = "application/vnd.oci.image.layer.v1.tar";
export const MEDIA_TYPE_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
export const MEDIA_TYPE_DOCKER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
export { MEDIA_TYPE_TAR_ZSTD };

export type Compression = "none" | "gzip" | "zstd" | "zstd:chunked";

export interface EncodeOptions {
  compression: Compression;
  /** Codec level; defaults: gzip 6, zstd 3, zstd:chunked 7 (fast: 3). */
  level?: number;
  /** zstd:chunked: lower level for speed (chunks and metadata stay the same). */
  fast?: boolean;
  /** zstd:chunked: content-defined chunks (§5) or one chunk per file (default: better ratio). */
  chunking?: boolean;
  /** zstd:chunked: also write the legacy `io.containers.*` keys (see README). */
  legacyAnnotations?: boolean;
  threads?: number;
  progress?: ProgressSink;
  /** zstd:chunked: the consumer finishes with each chunk before asking for the next; its memory is reused. */
  reuseOutput?: boolean;
}

export interface EncodedLayer {
  mediaType: string;
  digest: Digest;
  size: number;
  /** sha256 of the tar: the config's rootfs.diff_ids entry. */
  diffId: Digest;
  uncompressedSize: number;
  annotations: Record<string, string>;
  /** zstd:chunked only. */
  toc?: Toc;
}

export const CHUNKED_DEFAULT_LEVEL = 7;
export const CHUNKED_FAST_LEVEL = 3;

async function* hashing(source: AsyncIterable<Uint8Array>, d: Digester): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    d.update(chunk);
    yield chunk;
  }
}

/** Plain tar+zstd: one multi-threaded zstd stream (zstd's own workers), level 3 by default. */
async function* encodeZstd(
  source: AsyncIterable<Uint8Array>,
  level: number,
  threads: number,
): AsyncGenerator<Uint8Array> {
  const b = zstdBinding;
  const cctx = new b.CCtx();
  cctx.setParameter(b.CParameter.compressionLevel, level);
  cctx.setParameter(b.CParameter.windowLog, Math.min(23, Math.max(19, level >= 10 ? 23 : 21)));
  if (threads > 1) cctx.setParameter(b.CParameter.nbWorkers, threads);
  const buf = new Uint8Array(1 << 20);
  const run = function* (data: Uint8Array, op: number): Generator<Uint8Array> {
    let src = data;
    for (;;) {
      const [remaining, produced, consumed] = cctx.compressStream2(buf, src, op);
      if (produced > 0) yield buf.slice(0, produced);
      src = src.subarray(consumed);
      if (op === b.EndDirective.end ? remaining === 0 : src.length === 0) return;
    }
  };
  for await (const chunk of source) yield* run(chunk, b.EndDirective.continue);
  yield* run(new Uint8Array(0), b.EndDirective.end);
}

/**
 * Encodes a tar stream. Iterate `blob` (it drives the work, never reads the input
 * twice); `result` resolves after its last byte.
 */
export function encodeLayer(
  tar: AsyncIterable<Uint8Array>,
  opts: EncodeOptions,
): { blob: AsyncIterable<Uint8Array>; result: Promise<EncodedLayer> } {
  const threads = opts.threads ?? 2;
  if (opts.compression === "zstd:chunked") {
    const level = opts.level ?? (opts.fast ? CHUNKED_FAST_LEVEL : CHUNKED_DEFAULT_LEVEL);
    const { blob, result } = encodeChunked(tar, {
      level,
      chunking: opts.chunking ?? false,
      legacyAnnotations: opts.legacyAnnotations ?? false,
      threads,
      reuseOutput: opts.reuseOutput ?? false,
      ...(opts.progress ? { progress: opts.progress } : {}),
    });
    const mapped = result.then(
      (r): EncodedLayer => ({
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        diffId: r.diffId,
        uncompressedSize: r.uncompressedSize,
        annotations: r.annotations,
        toc: r.toc,
      }),
    );
    mapped.catch(() => {}); // the caller may only iterate `blob`, which throws too
    return { blob, result: mapped };
  }
  const diff = new Digester();
  const out = new Digester();
  let mediaType: string;
  let inner: AsyncIterable<Uint8Array>;
  const input = hashing(tar, diff);
  switch (opts.compression) {
    case "none":
      mediaType = MEDIA_TYPE_TAR;
      inner = input;
      break;
    case "gzip":
      mediaType = MEDIA_TYPE_TAR_GZIP;
      inner = encodeGzip(input, opts.level ?? 6, threads);
      break;
    case "zstd":
      mediaType = MEDIA_TYPE_TAR_ZSTD;
      inner = encodeZstd(input, opts.level ?? 3, threads);
      break;
    default:
      throw new RootstockError("INVALID_ARGUMENT", `unknown compression ${JSON.stringify(opts.compression)}`);
  }
  let resolve!: (r: EncodedLayer) => void;
  let reject!: (e: unknown) => void;
  const result = new Promise<EncodedLayer>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  result.catch(() => {});
  const blob = (async function* () {
    try {
      for await (const chunk of inner) {
        out.update(chunk);
        yield chunk;
      }
      resolve({
        mediaType,
        digest: out.digest(),
        size: out.size,
        diffId: diff.digest(),
        uncompressedSize: diff.size,
        annotations: {},
      });
    } catch (err) {
      reject(err);
      throw err;
    }
  })();
  return { blob, result };
}

/** Encodes into `path` (written as path.partial, renamed when complete). */
export async function encodeLayerToFile(
  tar: AsyncIterable<Uint8Array>,
  path: string,
  opts: EncodeOptions,
): Promise<EncodedLayer> {
  // writeChunksToFile finishes each write before it pulls the next chunk.
  const { blob, result } = encodeLayer(tar, { ...opts, reuseOutput: true });
  // Frames come in pieces of a few KiB: gathered into 1 MiB writes, no fsync (as before).
  await writeChunksToFile(blob, path, { sync: false });
  return result;
}

export interface DecodeDescriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
}

/** Which codec a layer media type uses. */
export function compressionOf(mediaType: string): "none" | "gzip" | "zstd" {
  if (mediaType.endsWith("+zstd") || mediaType.endsWith(".zstd")) return "zstd";
  if (mediaType.endsWith("+gzip") || mediaType.endsWith(".gzip")) return "gzip";
  if (mediaType.endsWith(".tar") || mediaType.endsWith("diff.tar")) return "none";
  throw new RootstockError(
    "INVALID_FORMAT",
    `layer media type ${JSON.stringify(mediaType)} is not a tar layer`,
  );
}

async function* gunzip(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const z = createGunzip();
  const outQueue: Uint8Array[] = [];
  let error: unknown;
  z.on("data", (c: Buffer) => outQueue.push(c));
  z.on("error", (e) => {
    error = e;
  });
  for await (const chunk of source) {
    if (!z.write(chunk)) await new Promise((r) => z.once("drain", r));
    if (error) throw new RootstockError("COMPRESSION", `gzip: ${String(error)}`, { cause: error });
    while (outQueue.length > 0) yield outQueue.shift() as Uint8Array;
  }
  await new Promise<void>((res) => {
    z.once("end", () => res());
    z.once("error", () => res());
    z.end();
    z.resume();
  });
  if (error) throw new RootstockError("COMPRESSION", `gzip: ${String(error)}`, { cause: error });
  while (outQueue.length > 0) yield outQueue.shift() as Uint8Array;
}

async function* unzstd(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const d = new ZstdStreamDecoder("layer", Number.MAX_SAFE_INTEGER, 1 << 20);
  const out: Uint8Array[] = [];
  for await (const chunk of source) {
    d.write(chunk, (c) => out.push(c));
    while (out.length > 0) yield out.shift() as Uint8Array;
  }
  d.end();
}

/**
 * Decodes a whole layer blob to its tar (a full pull, §B.11). Throws at the end of
 * the stream if the blob's size or digest, or the tar's diff_id, do not match:
 * consume it to the end before trusting what it produced.
 */
export async function* decodeLayer(
  blob: AsyncIterable<Uint8Array>,
  desc: DecodeDescriptor,
  diffId?: Digest,
): AsyncGenerator<Uint8Array> {
  if (desc.annotations) parseChunkedAnnotations(desc.annotations); // rejects eStargz+chunked mixes
  const blobDigest = new Digester();
  const tarDigest = new Digester();
  const source = hashing(blob, blobDigest);
  const codec = compressionOf(desc.mediaType);
  const inner = codec === "zstd" ? unzstd(source) : codec === "gzip" ? gunzip(source) : source;
  for await (const chunk of inner) {
    tarDigest.update(chunk);
    yield chunk;
  }
  if (blobDigest.size !== desc.size) {
    throw new RootstockError(
      "SIZE_MISMATCH",
      `layer ${desc.digest}: blob has ${blobDigest.size} bytes, descriptor says ${desc.size}`,
    );
  }
  const got = blobDigest.digest();
  if (got !== desc.digest)
    throw new RootstockError("DIGEST_MISMATCH", `layer ${desc.digest}: blob hashes to ${got}`);
  const tarGot = tarDigest.digest(); // a hash can be finished only once
  if (diffId && tarGot !== diffId) {
    throw new RootstockError(
      "DIGEST_MISMATCH",
      `layer ${desc.digest}: tar hashes to ${tarGot}, diff_id says ${diffId}`,
    );
  }
}
