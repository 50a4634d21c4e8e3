/**
 * An exploded layer: how the store keeps a layer after a (partial) pull or an
 * explode, without its compressed blob. Every regular file's content is a file object
 * (cas `files/`, shared by every layer and image); the entries keep all tar metadata
 * in TOC form (the same vocabulary as zstd:chunked, so a TOC is stored as is); the
 * tar-split, kept as a blob, rebuilds the exact layer tar from the file objects.
 *
 * In the store a record is a metadata document keyed by the layer's blob digest:
 *   { standsInForBlob: true, blobs: [tarSplit, entriesBlob], files: [every file digest],
 *     data: LayerRecord with `entries: []` and `entriesBlob: {digest, size}` }
 * where the entries blob is zstd(JSON of `entries`) (a record's JSON is mostly its
 * entries: ~2 MB for a Debian rootfs, ~10x less compressed). readLayerRecord
 * returns the record with its entries inline; a document with inline entries and
 * no entriesBlob is read as is.
 * so gc keeps the file objects and tar-split alive while an image references the layer,
 * and fsck accepts the blob itself being absent.
 */
import type { TocEntry } from "../compress/toc.js";
import type { Digest } from "../oci/digest.js";

export const LAYER_RECORD_VERSION = 1;

export interface LayerRecord {
  version: typeof LAYER_RECORD_VERSION;
  /** The layer blob this record stands in for, as the manifest names it. */
  blob: { digest: Digest; size: number; mediaType: string; annotations?: Record<string, string> };
  /** sha256 of the uncompressed tar: the config's diff_id, checked when the record was made. */
  diffId: Digest;
  /** Length of the uncompressed tar. */
  tarSize: number;
  /**
   * The layer's entries in tar order, in TOC form without payload offsets: one per tar
   * header (`chunk` entries dropped); `digest` set for every regular file with content.
   */
  entries: TocEntry[];
  /** A blob holding the zstd-compressed tar-split JSON lines (zstd-chunked.md §6). */
  tarSplit: { digest: Digest; size: number };
}
