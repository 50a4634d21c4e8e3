/**
 * The content store: rootstock's local image store (containerd's content store plus
 * a composefs-like file object store). Layout of the directory:
 *
 *   blobs/sha256/<hex>                  blobs (manifests, configs, layers), read-only
 *   files/sha256/<hex[0:2]>/<hex[2:]>   file objects by content digest, read-only
 *   refs/<uri-escaped repo>/<tag>       a descriptor (JSON) per repo:tag
 *   meta/sha256/<hex>.json              small JSON documents attached to a digest
 *   ingest/<pid>-<start>-<rand>         objects being written (never read)
 *   locks/                              see lock.ts
 *
 * Every mutation runs under a shared lease (lock.ts); gc and repair take the
 * exclusive lock. Callers that write several objects and then reference them hold
 * one lease across the whole sequence with `withLease`.
 */

import { execFile } from "node:child_process";
import { copyFile, open, readdir, readFile, rmdir, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { RootstockError } from "../errors.js";
import type {
  BlobRef,
  FileImportingSink,
  ImageRepository,
  LocalBlobSource,
  PutResult,
} from "../oci/blobs.js";
import { canonicalJson } from "../oci/canonical.js";
import { type Digest, digestHex, isDigest, parseDigest } from "../oci/digest.js";
import { checkStoreRepository, checkTag } from "../oci/reference.js";
import { array, boolean, custom, looseObject, optional, unknown } from "../oci/shape.js";
import { type Descriptor, parseDescriptor, parseJsonBytes, validateDocument } from "../oci/types.js";
import { atomicWriteFile, ensureDir, exists, forgetDir, fsyncDir } from "./atomic.js";
import { acquireShared, type LockOptions, withExclusiveLock } from "./lock.js";
import { type FileImportMode, ObjectDir } from "./objectdir.js";

export type { FileImportMode };

const execFileAsync = promisify(execFile);
/** Batch mode fsyncs up to this many new objects one by one at a flush; beyond, one syncfs. */
const FSYNC_EACH_MAX = 512;

/** fsync of files and directories, a few at a time. */
async function fsyncAll(paths: string[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const handle = await open(paths[next++] as string, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, paths.length) }, worker));
}

export interface StoreOptions {
  /** Lock wait limits (ms). */
  lock?: LockOptions;
  /**
   * `fsync` (default): every object is fsynced with its directory as it is
   * committed. `batch`: objects are committed without fsync and the filesystem is
   * synced once (syncfs) before the next ref or metadata document is written, so
   * nothing that a ref reaches can be lost; much faster for many small file
   * objects. A power loss may then leave unreferenced torn objects that fsck
   * reports and repair removes.
   */
  durability?: "fsync" | "batch";
}

export interface RefEntry {
  repository: string;
  tag: string;
  descriptor: Descriptor;
}

/**
 * A metadata document: `data` for its writer, plus the objects it keeps alive. A
 * document keyed by digest K lives as long as K is reachable from a ref (K may be a
 * layer whose bytes are not stored, e.g. after a partial pull); its `blobs` and
 * `files` then live too.
 */
export interface MetaDocument<T = unknown> {
  blobs?: Digest[];
  files?: Digest[];
  /** The document stands in for blob K's bytes (a partially pulled layer): fsck accepts K missing. */
  standsInForBlob?: boolean;
  data: T;
}

const digestList = array(custom<Digest>((v) => isDigest(v), "not a sha256 digest"));
const metaShape = looseObject({
  blobs: optional(digestList),
  files: optional(digestList),
  standsInForBlob: optional(boolean()),
  data: unknown(),
});

export class ContentStore {
  readonly root: string;
  /** Blobs by digest (manifests, indexes, configs, layers). */
  readonly blobs: ObjectDir;
  /** File objects by content digest. */
  readonly files: ObjectDir;
  readonly ingestDir: string;
  readonly lockDir: string;
  private readonly lockOptions: LockOptions;
  private readonly batch: boolean;
  /** Objects were committed without fsync since the last flush. */
  private unsynced = false;
  /** Batch mode: those objects, while they are few (else `pendingOverflow`). */
  private pendingSync: string[] = [];
  private pendingOverflow = false;

  private constructor(root: string, opts: StoreOptions) {
    this.root = root;
    this.ingestDir = join(root, "ingest");
    this.lockDir = join(root, "locks");
    this.blobs = new ObjectDir(join(root, "blobs"), this.ingestDir, false, "blob");
    this.files = new ObjectDir(join(root, "files"), this.ingestDir, true, "file object");
    this.lockOptions = opts.lock ?? {};
    this.batch = opts.durability === "batch";
    this.blobs.durable = !this.batch;
    this.files.durable = !this.batch;
  }

  /**
   * Makes every object committed so far durable. Batch mode: a few new objects are
   * fsynced one by one with their directories; many (a full pull, an import) take
   * one syncfs. syncfs writes every dirty page of the filesystem, other programs'
   * too, so for the handful of files of an update it costs far more than it saves.
   */
  async flush(): Promise<void> {
    if (!this.unsynced) return;
    const paths = this.pendingSync;
    const overflow = this.pendingOverflow;
    this.unsynced = false;
    this.pendingSync = [];
    this.pendingOverflow = false;
    // Node has no syncfs(2); coreutils `sync -f` is exactly that call.
    if (overflow) await execFileAsync("sync", ["-f", this.root]);
    else await fsyncAll([...paths, ...new Set(paths.map((p) => dirname(p)))]);
  }

  /** New file objects written into this store by other means (a writer thread): see flush(). */
  noteCommitted(newFiles: Iterable<Digest>): void {
    for (const digest of newFiles) this.track(this.files.path(digest));
  }

  private committed(dir: ObjectDir, result: PutResult): PutResult {
    if (!result.existed) this.track(dir.path(result.digest));
    return result;
  }

  /** Batch mode: remembers an object to make durable at the next flush. */
  private track(path: string): void {
    if (!this.batch) return;
    this.unsynced = true;
    if (this.pendingOverflow) return;
    if (this.pendingSync.length >= FSYNC_EACH_MAX) {
      this.pendingOverflow = true;
      this.pendingSync = [];
    } else this.pendingSync.push(path);
  }

  /** Opens (creating if needed) the store at `root`. */
  static async open(root: string, opts: StoreOptions = {}): Promise<ContentStore> {
    const store = new ContentStore(resolve(root), opts);
    for (const dir of ["blobs/sha256", "files/sha256", "refs", "meta/sha256", "ingest", "locks/shared"]) {
      await ensureDir(join(store.root, dir));
    }
    return store;
  }

  /** Runs `fn` under a shared lease: gc cannot start until it returns. Reentrant. */
  async withLease<T>(fn: () => Promise<T>): Promise<T> {
    const release = await acquireShared(this.lockDir, this.lockOptions);
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  /** Runs `fn` under the exclusive lock (no writer active). */
  withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return withExclusiveLock(this.lockDir, fn, this.lockOptions);
  }

  // ---- blobs -------------------------------------------------------------------

  hasBlob(digest: Digest): Promise<boolean> {
    return this.blobs.has(digest);
  }

  blobPath(digest: Digest): string {
    return this.blobs.path(digest);
  }

  putBlob(source: AsyncIterable<Uint8Array> | Uint8Array, expected?: Partial<BlobRef>): Promise<PutResult> {
    return this.withLease(async () => this.committed(this.blobs, await this.blobs.put(source, expected)));
  }

  openBlob(blob: BlobRef): Promise<AsyncIterable<Uint8Array>> {
    return this.blobs.open(blob);
  }

  readBlob(blob: BlobRef, maxBytes?: number): Promise<Uint8Array> {
    return this.blobs.read(blob, maxBytes);
  }

  // ---- file objects ------------------------------------------------------------

  hasFile(digest: Digest): Promise<boolean> {
    return this.files.has(digest);
  }

  /** hasFile in one blocking stat (see ObjectDir.hasSync). */
  hasFileSync(digest: Digest): boolean {
    return this.files.hasSync(digest);
  }

  /** Path of a file object (to hardlink from or read); it may not exist. */
  filePath(digest: Digest): string {
    return this.files.path(digest);
  }

  putFile(source: AsyncIterable<Uint8Array> | Uint8Array, expected?: Partial<BlobRef>): Promise<PutResult> {
    return this.withLease(async () => this.committed(this.files, await this.files.put(source, expected)));
  }

  /**
   * Adds an existing file as a file object, verified against `expected` if given.
   * `copy` (default) copies (reflinks where the filesystem can); `link` hardlinks
   * it, which makes the source's inode read-only and shared with the store: only
   * for files nobody will modify.
   */
  async importFile(
    path: string,
    expected?: Partial<BlobRef>,
    mode: FileImportMode = "copy",
  ): Promise<PutResult> {
    return this.withLease(async () =>
      this.committed(this.files, await this.files.importFile(path, expected, mode)),
    );
  }

  /** Adds an existing file as a blob (see ObjectDir.importFile). */
  async importBlob(
    path: string,
    expected?: Partial<BlobRef>,
    mode: FileImportMode = "copy",
  ): Promise<PutResult> {
    return this.withLease(async () =>
      this.committed(this.blobs, await this.blobs.importFile(path, expected, mode)),
    );
  }

  /** Copies a file object out to `dest` (reflink where possible). */
  async copyFileOut(digest: Digest, dest: string): Promise<void> {
    await copyFile(this.files.path(digest), dest);
  }

  // ---- refs --------------------------------------------------------------------

  private refDir(repository: string): string {
    return join(this.root, "refs", encodeURIComponent(repository));
  }

  private refPath(repository: string, tag: string): string {
    checkTag(tag);
    checkStoreRepository(repository);
    return join(this.refDir(repository), tag);
  }

  async getRef(repository: string, tag: string): Promise<Descriptor | undefined> {
    const path = this.refPath(repository, tag);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    return parseDescriptor(parseJsonBytes(bytes, `ref ${repository}:${tag}`), `ref ${repository}:${tag}`);
  }

  /** Points repository:tag at a manifest or index already in the store. */
  async setRef(repository: string, tag: string, descriptor: Descriptor): Promise<void> {
    const path = this.refPath(repository, tag);
    const desc = parseDescriptor(descriptor, `ref ${repository}:${tag}`);
    await this.withLease(async () => {
      if (!(await this.blobs.has(desc.digest))) {
        throw new RootstockError(
          "NOT_FOUND",
          `ref ${repository}:${tag}: blob ${desc.digest} is not in the store`,
        );
      }
      await atomicWriteFile(path, canonicalJson(desc), this.ingestDir);
    });
  }

  async deleteRef(repository: string, tag: string): Promise<boolean> {
    const path = this.refPath(repository, tag);
    return this.withLease(async () => {
      try {
        await unlink(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
        throw err;
      }
      await fsyncDir(this.refDir(repository));
      // Drop the repository's directory with its last tag (fails harmlessly if not empty).
      await rmdir(this.refDir(repository)).then(
        () => forgetDir(this.refDir(repository)),
        () => {},
      );
      return true;
    });
  }

  /** Every ref, sorted by repository then tag. Unreadable refs are reported by fsck, skipped here. */
  async listRefs(repository?: string): Promise<RefEntry[]> {
    const out: RefEntry[] = [];
    const repos =
      repository !== undefined
        ? [encodeURIComponent(repository)]
        : await readdir(join(this.root, "refs")).catch(() => [] as string[]);
    for (const escaped of repos) {
      const repo = safeDecode(escaped);
      if (repo === undefined) continue;
      for (const tag of await readdir(join(this.root, "refs", escaped)).catch(() => [] as string[])) {
        try {
          const descriptor = await this.getRef(repo, tag);
          if (descriptor) out.push({ repository: repo, tag, descriptor });
        } catch {}
      }
    }
    out.sort((a, b) => (a.repository === b.repository ? cmp(a.tag, b.tag) : cmp(a.repository, b.repository)));
    return out;
  }

  /** A repository view implementing the shared ImageRepository interface. */
  repository(name: string): ImageRepository {
    return new StoreRepository(this, name);
  }

  // ---- metadata ----------------------------------------------------------------

  metaPath(key: Digest): string {
    return join(this.root, "meta", "sha256", `${digestHex(key)}.json`);
  }

  /** Writes the metadata document for `key`; the objects it names must already be present. */
  async putMeta<T>(key: Digest, doc: MetaDocument<T>): Promise<void> {
    parseDigest(key, "metadata key");
    const checked = validateDocument(metaShape, doc, `metadata ${key}`);
    await this.withLease(async () => {
      for (const d of checked.blobs ?? []) {
        if (!(await this.blobs.has(d)))
          throw new RootstockError("NOT_FOUND", `metadata ${key}: blob ${d} is not in the store`);
      }
      for (const d of checked.files ?? []) {
        if (!this.files.hasSync(d)) {
          throw new RootstockError("NOT_FOUND", `metadata ${key}: file object ${d} is not in the store`);
        }
      }
      await this.flush();
      await atomicWriteFile(this.metaPath(key), canonicalJson(doc), this.ingestDir);
    });
  }

  async getMeta<T = unknown>(key: Digest): Promise<MetaDocument<T> | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.metaPath(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    return validateDocument(
      metaShape,
      parseJsonBytes(bytes, `metadata ${key}`),
      `metadata ${key}`,
    ) as MetaDocument<T>;
  }

  async deleteMeta(key: Digest): Promise<boolean> {
    return this.withLease(async () => {
      try {
        await unlink(this.metaPath(key));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
        throw err;
      }
    });
  }

  /** Keys of every metadata document present. */
  async listMeta(): Promise<{ keys: Digest[]; stray: string[] }> {
    const dir = join(this.root, "meta", "sha256");
    const keys: Digest[] = [];
    const stray: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const key = `sha256:${name.replace(/\.json$/, "")}`;
      if (name.endsWith(".json") && isDigest(key)) keys.push(key);
      else stray.push(join(dir, name));
    }
    return { keys: keys.sort(), stray };
  }

  /** Names of files under ingest/. */
  async listIngest(): Promise<string[]> {
    return (await readdir(this.ingestDir).catch(() => [] as string[])).sort();
  }

  async hasRefsDir(): Promise<boolean> {
    return exists(join(this.root, "refs"));
  }
}

/** decodeURIComponent, or undefined for a name we did not write. */
export function safeDecode(name: string): string | undefined {
  try {
    return decodeURIComponent(name);
  } catch {
    return undefined;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One repository of the store as an ImageRepository (blobs are shared by all repositories). */
class StoreRepository implements ImageRepository, LocalBlobSource, FileImportingSink {
  constructor(
    private readonly store: ContentStore,
    readonly name: string,
  ) {}

  has(digest: Digest): Promise<boolean> {
    return this.store.hasBlob(digest);
  }

  size(digest: Digest): Promise<number> {
    return this.store.blobs.size(digest);
  }

  open(blob: BlobRef): Promise<AsyncIterable<Uint8Array>> {
    return this.store.openBlob(blob);
  }

  read(blob: BlobRef, maxBytes?: number): Promise<Uint8Array> {
    return this.store.readBlob(blob, maxBytes);
  }

  put(source: AsyncIterable<Uint8Array> | Uint8Array, expected?: Partial<BlobRef>): Promise<PutResult> {
    return this.store.putBlob(source, expected);
  }

  localPath(digest: Digest): string {
    return this.store.blobPath(digest);
  }

  importBlob(path: string, expected?: Partial<BlobRef>, mode?: FileImportMode): Promise<PutResult> {
    return this.store.importBlob(path, expected, mode);
  }

  async resolve(tag: string): Promise<Descriptor> {
    const found = await this.store.getRef(this.name, tag);
    if (found) return found;
    const tags = await this.tags();
    throw new RootstockError(
      "NOT_FOUND",
      `store: no tag ${JSON.stringify(tag)} in ${this.name}; tags: ${tags.length ? tags.join(", ") : "none"}`,
    );
  }

  async tags(): Promise<string[]> {
    return (await this.store.listRefs(this.name)).map((r) => r.tag);
  }

  setTag(tag: string, descriptor: Descriptor): Promise<void> {
    return this.store.setRef(this.name, tag, descriptor);
  }

  deleteTag(tag: string): Promise<boolean> {
    return this.store.deleteRef(this.name, tag);
  }
}
