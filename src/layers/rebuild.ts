/**
 * The exact layer tar, rebuilt from a record's tar-split and the store's file
 * objects: each payload CRC-64-checked by the assembler, the whole stream hashed
 * and compared with the record's diff_id at its end. This is what lets a pulled
 * layer be served again (`copy store:X docker://…`) without its compressed blob.
 */
import { closeSync, createReadStream, openSync, readFileSync, readSync } from "node:fs";
import type { ContentStore } from "../cas/store.js";
import { assembleTar, parseTarSplit, type TarSplitEntry } from "../compress/tarsplit.js";
import { zstdDecompress } from "../compress/zstd.js";
import { RootstockError } from "../errors.js";
import { type Digest, Digester } from "../oci/digest.js";
import type { LayerRecord } from "./record.js";

/** Files up to this size are read in one call. */
const SMALL_FILE = 1 << 20;

/** The record's tar-split, read from its blob (verified) and parsed. */
export async function readRecordTarSplit(store: ContentStore, record: LayerRecord): Promise<TarSplitEntry[]> {
  const z = await store.readBlob(record.tarSplit, 1 << 30);
  return [...parseTarSplit(zstdDecompress(z, `tar-split of layer ${record.blob.digest}`))];
}

/**
 * Streams a file object's content (small ones in one read). With `scratch`, every
 * file is read into it, large ones in scratch-sized pieces, and yielded as views: the
 * consumer must be done with a chunk before it asks for the next (a hash, a write),
 * which spares fresh buffers (each page of one costs a fault to map).
 */
export async function* fileObjectContent(
  store: ContentStore,
  digest: Digest,
  size: number,
  scratch?: Uint8Array,
): AsyncGenerator<Uint8Array> {
  const path = store.filePath(digest);
  try {
    // Synchronous reads of cached files beat thread-pool round trips.
    if (scratch) {
      yield* readPieces(path, scratch, size);
      return;
    }
    if (size <= SMALL_FILE) {
      yield readFileSync(path);
      return;
    }
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>)
      yield chunk;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new RootstockError("NOT_FOUND", `file object ${digest} is missing from the store`);
    throw err;
  }
}

/** `path` read into `buf` piece by piece, up to one byte more than `size` (to notice a longer file). */
function* readPieces(path: string, buf: Uint8Array, size: number): Generator<Uint8Array> {
  const fd = openSync(path, "r");
  try {
    let left = size + 1;
    while (left > 0) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, left), null);
      if (n === 0) return;
      left -= n;
      yield buf.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * The tar for `tarSplit` with payloads taken from file objects named by `entries`
 * (TOC form: name → digest). Throws at the end when the tar's sha256 is not `diffId`.
 * `reuseBuffer`: every file is read into one buffer, so a chunk is valid only until
 * the next is asked for (for a consumer that only counts or hashes).
 */
export async function* assembleFromStore(
  store: ContentStore,
  tarSplit: Iterable<TarSplitEntry>,
  entries: LayerRecord["entries"],
  diffId: Digest,
  what: string,
  opts: {
    reuseBuffer?: boolean;
    /** A promise to await before reading a file object that is still being made (a pull's fetch). */
    ready?: (digest: Digest) => Promise<void> | undefined;
  } = {},
): AsyncGenerator<Uint8Array> {
  const scratch = opts.reuseBuffer ? Buffer.allocUnsafe(SMALL_FILE) : undefined;
  const ready = opts.ready;
  const byName = new Map<string, Digest>();
  for (const e of entries) if (e.type === "reg" && e.digest) byName.set(e.name, e.digest);
  const d = new Digester();
  const tar = assembleTar(tarSplit, (name, size) => {
    const digest = byName.get(name);
    if (!digest)
      throw new RootstockError(
        "CHUNKED_FORMAT",
        `${what}: tar-split file ${JSON.stringify(name)} has no entry`,
      );
    const content = fileObjectContent(store, digest, size, scratch);
    const pending = ready?.(digest);
    return pending ? afterReady(pending, content) : content;
  });
  for await (const chunk of tar) {
    d.update(chunk);
    yield chunk;
  }
  const got = d.digest();
  if (got !== diffId)
    throw new RootstockError(
      "DIGEST_MISMATCH",
      `${what}: rebuilt tar hashes to ${got}, diff_id says ${diffId}`,
    );
}

/** `content` once `ready` has resolved (a generator: nothing is opened before). */
async function* afterReady(
  ready: Promise<void>,
  content: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  await ready;
  yield* content;
}

/** The layer's exact tar stream (verified against diff_id at its end). */
export async function* rebuildLayerTar(store: ContentStore, record: LayerRecord): AsyncGenerator<Uint8Array> {
  const tarSplit = await readRecordTarSplit(store, record);
  yield* assembleFromStore(store, tarSplit, record.entries, record.diffId, `layer ${record.blob.digest}`);
}
