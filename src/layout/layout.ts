/**
 * OCI image layout directories (image-spec image-layout.md), rootstock's embedded
 * default "registry":
 *
 *   oci-layout         {"imageLayoutVersion":"1.0.0"}
 *   index.json         the image index; tags are `org.opencontainers.image.ref.name` annotations
 *   blobs/sha256/<hex> blobs, written with the content store's ingest discipline
 *   .rootstock/        our ingest files and locks (ignored by other tools)
 *
 * index.json is rewritten atomically (temp + fsync + rename) under an exclusive
 * lock, so concurrent taggers never lose each other's updates.
 */
import { readFile } from "node:fs/promises";
import { join, resolve as resolvePath } from "node:path";
import { atomicWriteFile, ensureDir, exists } from "../cas/atomic.js";
import { type LockOptions, withExclusiveLock } from "../cas/lock.js";
import { type FileImportMode, ObjectDir } from "../cas/objectdir.js";
import { RootstockError } from "../errors.js";
import type {
  BlobRef,
  FileImportingSink,
  ImageRepository,
  LocalBlobSource,
  PutResult,
} from "../oci/blobs.js";
import { canonicalJson } from "../oci/canonical.js";
import type { Digest } from "../oci/digest.js";
import { isIndexMediaType, isManifestMediaType, MediaType } from "../oci/mediatypes.js";
import { checkOciRefName, type ImageReference } from "../oci/reference.js";
import { type Descriptor, type ImageIndex, parseIndex, parseJsonBytes } from "../oci/types.js";

export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
export const LAYOUT_VERSION = "1.0.0";

export interface LayoutOptions {
  /** Create the layout (oci-layout, empty index.json) when the directory has none. */
  create?: boolean;
  lock?: LockOptions;
}

export class OciLayout implements ImageRepository, LocalBlobSource, FileImportingSink {
  readonly path: string;
  readonly blobs: ObjectDir;
  private readonly privateDir: string;
  private readonly lockOptions: LockOptions;

  private constructor(path: string, opts: LayoutOptions) {
    this.path = path;
    this.privateDir = join(path, ".rootstock");
    this.blobs = new ObjectDir(join(path, "blobs"), join(this.privateDir, "ingest"), false, "blob");
    this.lockOptions = opts.lock ?? {};
  }

  /** Opens the layout at `path`, checking `oci-layout`; NOT_FOUND unless it exists or `create`. */
  static async open(path: string, opts: LayoutOptions = {}): Promise<OciLayout> {
    const layout = new OciLayout(resolvePath(path), opts);
    const marker = join(layout.path, "oci-layout");
    if (!(await exists(marker))) {
      if (!opts.create)
        throw new RootstockError("NOT_FOUND", `${layout.path}: not an OCI layout (no oci-layout file)`);
      await ensureDir(join(layout.path, "blobs", "sha256"));
      await layout.withIndexLock(async () => {
        if (!(await exists(join(layout.path, "index.json")))) {
          await layout.writeIndex({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
        }
        if (!(await exists(marker))) {
          await atomicWriteFile(
            marker,
            canonicalJson({ imageLayoutVersion: LAYOUT_VERSION }),
            layout.ingestDir,
          );
        }
      });
    }
    const version = parseJsonBytes(await readFile(marker), `${marker}`) as { imageLayoutVersion?: unknown };
    if (typeof version !== "object" || version === null || typeof version.imageLayoutVersion !== "string") {
      throw new RootstockError("INVALID_FORMAT", `${marker}: imageLayoutVersion: required field is missing`);
    }
    if (!version.imageLayoutVersion.startsWith("1.")) {
      throw new RootstockError(
        "INVALID_FORMAT",
        `${marker}: imageLayoutVersion: unsupported version ${JSON.stringify(version.imageLayoutVersion)}`,
      );
    }
    return layout;
  }

  private get ingestDir(): string {
    return join(this.privateDir, "ingest");
  }

  private withIndexLock<T>(fn: () => Promise<T>): Promise<T> {
    return withExclusiveLock(join(this.privateDir, "locks"), fn, this.lockOptions);
  }

  // ---- index.json --------------------------------------------------------------

  async readIndex(): Promise<ImageIndex> {
    const path = join(this.path, "index.json");
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw new RootstockError("NOT_FOUND", `${path}: missing`, { cause: err });
    }
    return parseIndex(bytes, path);
  }

  /** Replaces index.json atomically. Callers changing it hold the index lock (see update). */
  private async writeIndex(index: ImageIndex): Promise<void> {
    await atomicWriteFile(join(this.path, "index.json"), canonicalJson(index), this.ingestDir);
  }

  /** Read-modify-write of index.json under the layout's lock. */
  async updateIndex(change: (index: ImageIndex) => ImageIndex | Promise<ImageIndex>): Promise<ImageIndex> {
    return this.withIndexLock(async () => {
      const next = await change(await this.readIndex());
      await this.writeIndex(next);
      return next;
    });
  }

  // ---- blobs (BlobSource, BlobSink) --------------------------------------------

  has(digest: Digest): Promise<boolean> {
    return this.blobs.has(digest);
  }

  size(digest: Digest): Promise<number> {
    return this.blobs.size(digest);
  }

  open(blob: BlobRef): Promise<AsyncIterable<Uint8Array>> {
    return this.blobs.open(blob);
  }

  read(blob: BlobRef, maxBytes?: number): Promise<Uint8Array> {
    return this.blobs.read(blob, maxBytes);
  }

  put(source: AsyncIterable<Uint8Array> | Uint8Array, expected?: Partial<BlobRef>): Promise<PutResult> {
    return this.blobs.put(source, expected);
  }

  blobPath(digest: Digest): string {
    return this.blobs.path(digest);
  }

  localPath(digest: Digest): string {
    return this.blobs.path(digest);
  }

  importBlob(path: string, expected?: Partial<BlobRef>, mode?: FileImportMode): Promise<PutResult> {
    return this.blobs.importFile(path, expected, mode);
  }

  // ---- tags (TagStore) ---------------------------------------------------------

  /** Tags in index order (entries without a ref name are untagged images). */
  async tags(): Promise<string[]> {
    const index = await this.readIndex();
    const names = index.manifests
      .map((d) => d.annotations?.[REF_NAME_ANNOTATION])
      .filter((n) => n !== undefined);
    return [...new Set(names)].sort();
  }

  /**
   * The descriptor for `tag`; without a tag, the only manifest of the layout (an
   * error lists the tags when there are several).
   */
  async resolve(tag?: string): Promise<Descriptor> {
    const index = await this.readIndex();
    const where = join(this.path, "index.json");
    if (tag === undefined) {
      if (index.manifests.length === 1) return index.manifests[0]!;
      const tags = await this.tags();
      throw new RootstockError(
        index.manifests.length === 0 ? "NOT_FOUND" : "INVALID_ARGUMENT",
        index.manifests.length === 0
          ? `${where}: the layout holds no image`
          : `${where}: ${index.manifests.length} images; name one of the tags: ${tags.join(", ") || "(none tagged)"}`,
      );
    }
    const found = index.manifests.filter((d) => d.annotations?.[REF_NAME_ANNOTATION] === tag);
    if (found.length === 1) return found[0]!;
    if (found.length > 1) {
      throw new RootstockError(
        "INVALID_FORMAT",
        `${where}: tag ${JSON.stringify(tag)} names ${found.length} entries`,
      );
    }
    const tags = await this.tags();
    throw new RootstockError(
      "NOT_FOUND",
      `${where}: no tag ${JSON.stringify(tag)}; tags: ${tags.length ? tags.join(", ") : "none"}`,
    );
  }

  /**
   * Adds an index.json entry for `descriptor` named `tag`, replacing the entry that
   * held the tag before. The blob must be present.
   */
  async setTag(tag: string, descriptor: Descriptor): Promise<void> {
    checkOciRefName(tag);
    await this.addEntry(descriptor, tag);
  }

  /** Adds an entry (tagged or not) for a manifest or index already in the layout. */
  async addEntry(descriptor: Descriptor, tag?: string): Promise<void> {
    if (!isManifestMediaType(descriptor.mediaType) && !isIndexMediaType(descriptor.mediaType)) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `${this.path}: ${descriptor.digest}: media type ${descriptor.mediaType} is not a manifest or index`,
      );
    }
    if (!(await this.blobs.has(descriptor.digest))) {
      throw new RootstockError("NOT_FOUND", `${this.path}: blob ${descriptor.digest} is not in the layout`);
    }
    const { annotations, ...rest } = descriptor;
    const others = { ...annotations };
    delete others[REF_NAME_ANNOTATION];
    const entry: Descriptor = {
      ...rest,
      ...(tag !== undefined || Object.keys(others).length > 0
        ? { annotations: tag !== undefined ? { ...others, [REF_NAME_ANNOTATION]: tag } : others }
        : {}),
    };
    await this.updateIndex((index) => {
      const manifests = index.manifests.filter((d) =>
        tag !== undefined
          ? d.annotations?.[REF_NAME_ANNOTATION] !== tag
          : !(d.digest === entry.digest && d.annotations?.[REF_NAME_ANNOTATION] === undefined),
      );
      return { ...index, manifests: [...manifests, entry] };
    });
  }

  async deleteTag(tag: string): Promise<boolean> {
    let removed = false;
    await this.updateIndex((index) => {
      const manifests = index.manifests.filter((d) => d.annotations?.[REF_NAME_ANNOTATION] !== tag);
      removed = manifests.length !== index.manifests.length;
      return { ...index, manifests };
    });
    return removed;
  }
}

/** Opens the layout of an `oci:PATH[:TAG]` reference and resolves its tag. */
export async function resolveLayoutReference(
  ref: Extract<ImageReference, { transport: "oci" }>,
  opts: LayoutOptions = {},
): Promise<{ layout: OciLayout; descriptor: Descriptor }> {
  const layout = await OciLayout.open(ref.path, opts);
  return { layout, descriptor: await layout.resolve(ref.tag) };
}
