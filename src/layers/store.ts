/**
 * Layer records in the content store: a metadata document keyed by the layer's blob
 * digest (format in record.ts), keeping the tar-split blob and every file object of
 * the layer alive while an image references the layer.
 */
import type { ContentStore } from "../cas/store.js";
import type { TocEntry } from "../compress/toc.js";
import { zstdCompress, zstdDecompress } from "../compress/zstd.js";
import { RootstockError } from "../errors.js";
import { type Digest, isDigest } from "../oci/digest.js";
import { LAYER_RECORD_VERSION, type LayerRecord } from "./record.js";

// Decodes in place (Buffer.from would copy the decompressed rows first).
const utf8 = new TextDecoder();

/**
 * Writes `record` as the metadata document of its blob digest. The tar-split blob
 * and every file object in `fileDigests` must already be in the store (putMeta
 * checks): a record becomes visible only once everything it names is present.
 */
export async function writeLayerRecord(
  store: ContentStore,
  record: LayerRecord,
  fileDigests: Iterable<Digest>,
): Promise<void> {
  checkRecord(record, `layer record ${record.blob.digest}`);
  const files = [...new Set(fileDigests)].sort();
  return store.withLease(async () => {
    // The entries are most of a record: kept as a zstd blob (~10x smaller than the JSON).
    const entries = await store.putBlob(zstdCompress(Buffer.from(JSON.stringify(record.entries)), 6));
    const { entries: _inline, ...rest } = record;
    const stored: StoredLayerRecord = {
      ...rest,
      entries: [],
      entriesBlob: { digest: entries.digest, size: entries.size },
    };
    await store.putMeta<StoredLayerRecord>(record.blob.digest, {
      standsInForBlob: true,
      blobs: [record.tarSplit.digest, entries.digest],
      files,
      data: stored,
    });
  });
}

/** On disk, `entries` may live in a blob (zstd of their JSON); readLayerRecord inlines them. */
interface StoredLayerRecord extends LayerRecord {
  entriesBlob?: { digest: Digest; size: number };
}

/** The record of a layer, or undefined when the store has none. Malformed records are STORE_CORRUPT. */
export async function readLayerRecord(
  store: ContentStore,
  layerDigest: Digest,
): Promise<LayerRecord | undefined> {
  const doc = await store.getMeta<unknown>(layerDigest);
  if (!doc) return undefined;
  const what = `layer record ${layerDigest}`;
  try {
    const stored = doc.data as StoredLayerRecord;
    let record: LayerRecord = stored;
    if (stored && typeof stored === "object" && stored.entriesBlob) {
      if (!isDigest(stored.entriesBlob.digest)) throw new Error("entriesBlob.digest is not a sha256 digest");
      const z = await store.readBlob(stored.entriesBlob, 1 << 30);
      const { entriesBlob: _blob, ...rest } = stored;
      record = {
        ...rest,
        entries: JSON.parse(utf8.decode(zstdDecompress(z, `${what} entries`))),
      };
    }
    checkRecord(record, what);
    if (record.blob.digest !== layerDigest) throw new Error(`names blob ${record.blob.digest}`);
    return record;
  } catch (err) {
    throw new RootstockError("STORE_CORRUPT", `${what}: ${(err as Error).message}`, { cause: err });
  }
}

/** Every file digest a record needs (regular files with content). */
export function recordFileDigests(record: LayerRecord): Digest[] {
  const out = new Set<Digest>();
  for (const e of record.entries) if (e.type === "reg" && (e.size ?? 0) > 0 && e.digest) out.add(e.digest);
  return [...out];
}

function fail(what: string, msg: string): never {
  throw new RootstockError("INVALID_FORMAT", `${what}: ${msg}`);
}

const ENTRY_TYPES = new Set(["reg", "hardlink", "symlink", "char", "block", "dir", "fifo"]);

/** Shape checks: enough that the rest of the code may trust the record's fields. */
function checkRecord(r: LayerRecord, what: string): void {
  if (typeof r !== "object" || r === null) fail(what, "not an object");
  if (r.version !== LAYER_RECORD_VERSION)
    fail(what, `version ${String(r.version)}, expected ${LAYER_RECORD_VERSION}`);
  if (!r.blob || !isDigest(r.blob.digest)) fail(what, "blob.digest is not a sha256 digest");
  if (!Number.isSafeInteger(r.blob.size) || r.blob.size < 0) fail(what, "blob.size is not a size");
  if (typeof r.blob.mediaType !== "string") fail(what, "blob.mediaType is missing");
  if (!isDigest(r.diffId)) fail(what, "diffId is not a sha256 digest");
  if (!Number.isSafeInteger(r.tarSize) || r.tarSize < 0) fail(what, "tarSize is not a size");
  if (!r.tarSplit || !isDigest(r.tarSplit.digest)) fail(what, "tarSplit.digest is not a sha256 digest");
  if (!Array.isArray(r.entries)) fail(what, "entries is not a list");
  r.entries.forEach((e: TocEntry, i) => {
    if (typeof e !== "object" || e === null || typeof e.name !== "string")
      fail(what, `entries[${i}]: no name`);
    if (!ENTRY_TYPES.has(e.type))
      fail(what, `entry ${JSON.stringify(e.name)}: type ${JSON.stringify(e.type)}`);
    if (e.type === "reg" && (e.size ?? 0) > 0 && !isDigest(e.digest))
      fail(what, `entry ${JSON.stringify(e.name)}: regular file without digest`);
  });
}
