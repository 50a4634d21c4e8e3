/**
 * A directory of read-only objects named by their sha256: the blob directory of the
 * content store and of OCI layouts (`sha256/<hex>`), and the store's file objects
 * (`sha256/<hex[0:2]>/<hex[2:]>`, fanned out because a rootfs has many files).
 * Writes go through `ingest`; reads are verified streams.
 */
import { constants, createReadStream, existsSync } from "node:fs";
import { copyFile, link, readdir, readFile, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { RootstockError } from "../errors.js";
import { readFileChunks } from "../file-chunks.js";
import type { BlobRef, BlobSink, BlobSource, PutResult } from "../oci/blobs.js";
import { lendingStream } from "../oci/borrow.js";
import { type Digest, Digester, digestHex, isDigest, markVerified, verifyDigest } from "../oci/digest.js";
import { commitIngestFile, inDir, ingest, uniqueName } from "./atomic.js";
import { sharedHashPool } from "./hashpool.js";

export type FileImportMode = "copy" | "link";

export const DEFAULT_READ_LIMIT = 16 * 1024 * 1024;

/** Reads `path` as a stream whose end checks size and digest against `expected` (marked: see markVerified). */
export function verifiedFileStream(
  path: string,
  expected: BlobRef,
  what: string,
): AsyncGenerator<Uint8Array> {
  // A consumer that accepts borrowed chunks gets them from a ring of four buffers
  // instead of a fresh one per MiB.
  return lendingStream((lend) =>
    markVerified(verifyingFileStream(path, expected, what, lend), expected.digest),
  );
}

async function* verifyingFileStream(
  path: string,
  expected: BlobRef,
  what: string,
  lend: { borrowed: boolean },
): AsyncGenerator<Uint8Array> {
  const digester = new Digester();
  for await (const chunk of readFileChunks(path, 1024 * 1024, lend.borrowed)) {
    digester.update(chunk);
    if (expected.size !== undefined && digester.size > expected.size) {
      throw new RootstockError("SIZE_MISMATCH", `${what}: expected ${expected.size} bytes, got more`);
    }
    yield chunk;
  }
  verifyDigest({ digest: digester.digest(), size: digester.size }, expected, what);
}

/** Files up to this size are read in one call rather than streamed. */
export const SMALL_FILE = 4 * 1024 * 1024;

/** sha256 and size of a file, streamed (small files in one read). */
export async function hashFile(path: string): Promise<{ digest: Digest; size: number }> {
  const digester = new Digester();
  const info = await stat(path);
  if (info.size <= SMALL_FILE) {
    digester.update(await readFile(path));
    return { digest: digester.digest(), size: digester.size };
  }
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    digester.update(chunk);
  }
  return { digest: digester.digest(), size: digester.size };
}

export class ObjectDir implements BlobSource, BlobSink {
  constructor(
    /** The directory holding `sha256/`. */
    readonly root: string,
    /** Where ingest files live (same filesystem as root). */
    readonly ingestDir: string,
    /** Two-level fan-out (file objects) or flat (blobs, as OCI layouts require). */
    readonly fanout: boolean,
    /** `blob` or `file object`: names objects in errors. */
    readonly kind: string,
    /** fsync each object as it is committed (see IngestOptions.durable). */
    public durable = true,
  ) {}

  path(digest: Digest): string {
    const hex = digestHex(digest);
    return this.fanout
      ? join(this.root, "sha256", hex.slice(0, 2), hex.slice(2))
      : join(this.root, "sha256", hex);
  }

  private notFound(digest: Digest): RootstockError {
    return new RootstockError("NOT_FOUND", `${this.kind} ${digest} not found in ${this.root}`);
  }

  async has(digest: Digest): Promise<boolean> {
    try {
      await stat(this.path(digest));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * `has` in one blocking call: for checks over thousands of objects (a layer's
   * files), where a thread-pool round trip per object costs more than the call.
   */
  hasSync(digest: Digest): boolean {
    // access(2), not stat: no Stats object to build (a pull asks this for thousands of files).
    return existsSync(this.path(digest));
  }

  async size(digest: Digest): Promise<number> {
    try {
      return (await stat(this.path(digest))).size;
    } catch {
      throw this.notFound(digest);
    }
  }

  async open(blob: BlobRef): Promise<AsyncIterable<Uint8Array>> {
    const size = await this.size(blob.digest);
    if (blob.size !== undefined && size !== blob.size) {
      throw new RootstockError(
        "SIZE_MISMATCH",
        `${this.kind} ${blob.digest}: expected ${blob.size} bytes, stored ${size}`,
      );
    }
    return verifiedFileStream(this.path(blob.digest), blob, `${this.kind} ${blob.digest}`);
  }

  async read(blob: BlobRef, maxBytes = DEFAULT_READ_LIMIT): Promise<Uint8Array> {
    const size = await this.size(blob.digest);
    if (size > maxBytes) {
      throw new RootstockError(
        "INVALID_FORMAT",
        `${this.kind} ${blob.digest}: ${size} bytes is over the ${maxBytes} byte limit`,
      );
    }
    const chunks: Uint8Array[] = [];
    for await (const chunk of await this.open(blob)) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  put(source: AsyncIterable<Uint8Array> | Uint8Array, expected?: Partial<BlobRef>): Promise<PutResult> {
    const what = `${this.kind} ${expected?.digest ?? "(new)"}`;
    return ingest(source, {
      ingestDir: this.ingestDir,
      pathFor: (d) => this.path(d),
      expected,
      what,
      durable: this.durable,
    });
  }

  /**
   * Adds an existing file as an object without streaming it through JS: a kernel
   * copy (reflink where the filesystem can) or a hardlink into ingest, hashed there
   * on a worker thread, verified against `expected`, then committed. `link` shares
   * the caller's inode (made read-only): only for files nobody will modify.
   */
  async importFile(
    path: string,
    expected?: Partial<BlobRef>,
    mode: FileImportMode = "copy",
  ): Promise<PutResult> {
    if (expected?.digest !== undefined && (await this.has(expected.digest))) {
      return { digest: expected.digest, size: await this.size(expected.digest), existed: true };
    }
    const tmp = join(this.ingestDir, uniqueName());
    await inDir(this.ingestDir, () =>
      mode === "copy"
        ? copyFile(path, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE)
        : link(path, tmp),
    );
    try {
      const actual = await sharedHashPool().hash(tmp);
      const what = `${this.kind} ${expected?.digest ?? path}`;
      verifyDigest(actual, { digest: expected?.digest ?? actual.digest, size: expected?.size }, what);
      return await commitIngestFile(tmp, actual, (d) => this.path(d), this.durable);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Removes an object (gc, fsck repair). False when it was not there. */
  async remove(digest: Digest): Promise<boolean> {
    try {
      await unlink(this.path(digest));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
  }

  /**
   * Every object present, plus names that are not objects (`stray`): a listing for
   * gc, fsck and du. Missing directories list as empty.
   */
  async list(): Promise<{ digests: Digest[]; stray: string[] }> {
    const digests: Digest[] = [];
    const stray: string[] = [];
    const base = join(this.root, "sha256");
    const names = await readdir(base).catch(() => [] as string[]);
    for (const name of names) {
      if (!this.fanout) {
        const digest = `sha256:${name}`;
        if (isDigest(digest)) digests.push(digest);
        else stray.push(join(base, name));
        continue;
      }
      const sub = join(base, name);
      if (!/^[0-9a-f]{2}$/.test(name)) {
        stray.push(sub);
        continue;
      }
      for (const rest of await readdir(sub).catch(() => [] as string[])) {
        const digest = `sha256:${name}${rest}`;
        if (isDigest(digest)) digests.push(digest);
        else stray.push(join(sub, rest));
      }
    }
    digests.sort();
    return { digests, stray };
  }
}
