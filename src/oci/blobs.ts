/**
 * The small interfaces every image backend implements (go-containerregistry
 * style), so one `copy` can move images between the local store, an OCI layout
 * and a registry. Types only: implementations live in cas, layout and remote.
 */
import type { Digest } from "./digest.js";
import type { Descriptor } from "./types.js";

/** What a caller knows about a blob before reading or writing it. */
export interface BlobRef {
  digest: Digest;
  /** Checked at the end of a read or write when given. */
  size?: number;
  /** When known: a registry serves manifests and indexes apart from other blobs. */
  mediaType?: string;
}

export interface BlobSource {
  has(digest: Digest): Promise<boolean>;
  /** Stored size in bytes; NOT_FOUND when absent. */
  size(digest: Digest): Promise<number>;
  /**
   * A stream of the blob's bytes that checks size and digest when it ends and throws
   * DIGEST_MISMATCH / SIZE_MISMATCH then. NOT_FOUND is thrown by open itself.
   */
  open(blob: BlobRef): Promise<AsyncIterable<Uint8Array>>;
  /** The whole blob, verified; refuses blobs over `maxBytes` (default 16 MiB: for manifests and configs). */
  read(blob: BlobRef, maxBytes?: number): Promise<Uint8Array>;
}

export interface PutResult {
  digest: Digest;
  size: number;
  /** The blob was already present; nothing was written. */
  existed: boolean;
}

export interface BlobSink {
  has(digest: Digest): Promise<boolean>;
  /**
   * Stores bytes, verified against `expected` while streaming. Nothing becomes
   * visible unless size and digest match; an already present blob is a no-op
   * (the source is then closed unread).
   */
  put(source: AsyncIterable<Uint8Array> | Uint8Array, expected?: Partial<BlobRef>): Promise<PutResult>;
}

/** Named pointers to manifests or indexes within one repository (or one layout). */
export interface TagStore {
  /** The descriptor a tag points to; NOT_FOUND naming the tag and listing the known ones. */
  resolve(tag: string): Promise<Descriptor>;
  tags(): Promise<string[]>;
  /** Points `tag` at `descriptor` (whose blob must already be present), replacing any previous target. */
  setTag(tag: string, descriptor: Descriptor): Promise<void>;
  /** Removes a tag; false when it did not exist. */
  deleteTag(tag: string): Promise<boolean>;
}

/** One image repository: blobs in and out, plus its tags. */
export interface ImageRepository extends BlobSource, BlobSink, TagStore {}

/** A source whose blobs are files on this machine (store, layout). */
export interface LocalBlobSource extends BlobSource {
  /** The file holding a blob (which may not exist). */
  localPath(digest: Digest): string;
}

/** A sink that can take a blob from a local file without streaming it through JS. */
export interface FileImportingSink extends BlobSink {
  /**
   * Kernel copy (reflink where possible) or hardlink (`link`: both sides must treat
   * the inode as immutable), verified like `put`.
   */
  importBlob(path: string, expected?: Partial<BlobRef>, mode?: "copy" | "link"): Promise<PutResult>;
}
