/**
 * The write discipline shared by the content store and OCI layouts (containerd's
 * ingest → commit): bytes go to a uniquely named file under an ingest directory,
 * are hashed while streaming, checked against what the caller expected, fsynced,
 * made read-only, renamed into place and the target directory fsynced. Readers
 * never see a half-written object, and a rejected one leaves nothing behind.
 */

import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { chmod, type FileHandle, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { RootstockError } from "../errors.js";
import { acceptBorrowedChunks } from "../oci/borrow.js";
import {
  type Digest,
  Digester,
  sha256,
  TrustedDigester,
  verifiedDigestOf,
  verifyDigest,
} from "../oci/digest.js";

/** Process start time in clock ticks (Linux), so a reused pid is not taken for its predecessor. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22, counted after the parenthesised command name (which may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

/** `PID-STARTTIME` of this process: the owner tag in ingest and lock file names. */
export const PROCESS_ID = `${process.pid}-${processStartTime(process.pid) ?? "0"}`;

/** Whether the process named by an owner tag (`PID-STARTTIME`) is still running. */
export function isOwnerAlive(owner: string): boolean {
  const m = /^(\d+)-(\d+)$/.exec(owner);
  if (!m) return false;
  const pid = Number(m[1]);
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const start = processStartTime(pid);
  // Without /proc we cannot tell a reused pid apart: assume alive (never delete live work).
  return start === undefined || m[2] === "0" || start === m[2];
}

/** The owner tag of an ingest or lease file name (`PID-START-RANDOM`). */
export function ownerOfName(name: string): string | undefined {
  const m = /^(\d+-\d+)-[0-9a-f]+/.exec(name);
  return m?.[1];
}

export function uniqueName(): string {
  return `${PROCESS_ID}-${randomBytes(6).toString("hex")}`;
}

// Per-process prefix + counter: unique without a random draw per object.
const namePrefix = uniqueName();
let nameCounter = 0;

/** A unique ingest name, cheaper than uniqueName() for many small objects. */
function nextName(): string {
  return `${namePrefix}-${(nameCounter++).toString(36)}`;
}

export async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Directories known to exist (object fan-out, ingest): saves a stat per object. */
const knownDirs = new Set<string>();

/** Forgets a cached directory (someone removed it behind our back). */
export function forgetDir(path: string): void {
  knownDirs.delete(path);
}

/** mkdir -p that fsyncs the parent of every directory it creates. */
export async function ensureDir(path: string): Promise<void> {
  if (knownDirs.has(path)) return;
  try {
    await stat(path);
    knownDirs.add(path);
    return;
  } catch {}
  const parent = dirname(path);
  if (parent !== path) await ensureDir(parent);
  try {
    await mkdir(path);
    await fsyncDir(parent);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  knownDirs.add(path);
}

/** Runs `fn`, and once more after re-creating `dir` if it failed because `dir` vanished. */
export async function inDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  await ensureDir(dir);
  try {
    return await fn();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    forgetDir(dir);
    await ensureDir(dir);
    return fn();
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** Closes a source we decided not to read (an already present blob). */
export async function closeSource(source: AsyncIterable<Uint8Array> | Uint8Array): Promise<void> {
  if (source instanceof Uint8Array) return;
  const destroy = (source as { destroy?: () => void }).destroy;
  if (typeof destroy === "function") {
    destroy.call(source);
    return;
  }
  await source[Symbol.asyncIterator]().return?.();
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

/**
 * Links a verified ingest file into place (blocking: link and stat are tiny calls).
 * An object already there is kept (true) unless its size shows it is damaged, in
 * which case ours replaces it. link() never replaces: a concurrent writer of the
 * same object keeps its inode, and hardlinks taken from it stay valid.
 */
function linkOrKeep(tmp: string, target: string, size: number): boolean {
  try {
    linkSync(tmp, target);
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  if (statOrUndefined(target)?.size === size) return true;
  renameSync(tmp, target);
  return false;
}

export interface CommitResult {
  digest: Digest;
  size: number;
  existed: boolean;
}

export interface IngestOptions {
  ingestDir: string;
  /** Where the object named by `digest` lives. */
  pathFor: (digest: Digest) => string;
  expected?: { digest?: Digest; size?: number };
  /** Names the object in errors (`blob sha256:…`). */
  what: string;
  /**
   * fsync the object and its directory before returning (default). The content
   * store's batch mode turns this off and syncs the filesystem once before it
   * writes a ref instead.
   */
  durable?: boolean;
}

/** Streams `source` into the object store rooted by `pathFor`, verified; see the module comment. */
export async function ingest(
  source: AsyncIterable<Uint8Array> | Uint8Array,
  opts: IngestOptions,
): Promise<CommitResult> {
  const { expected } = opts;
  if (source instanceof Uint8Array && opts.durable === false) return ingestBytesSync(source, opts);
  if (expected?.digest !== undefined) {
    const target = opts.pathFor(expected.digest);
    const present = await stat(target).catch(() => undefined);
    if (present && (expected.size === undefined || present.size === expected.size)) {
      await closeSource(source);
      return { digest: expected.digest, size: present.size, existed: true };
    }
  }
  const durable = opts.durable ?? true;
  const tmp = join(opts.ingestDir, uniqueName());
  const handle = await inDir(opts.ingestDir, () => open(tmp, "wx", 0o600));
  // A stream that verifies itself against the digest we expect (a registry or store
  // read): it throws before its end on a mismatch, so counting its bytes is enough.
  const selfVerified = expected?.digest !== undefined && verifiedDigestOf(source) === expected.digest;
  // Every chunk is hashed and written (or copied) before the next is asked for.
  acceptBorrowedChunks(source);
  const digester = selfVerified ? new TrustedDigester(expected.digest as Digest) : new Digester();
  let committed = false;
  try {
    const chunks: AsyncIterable<Uint8Array> | Uint8Array[] = source instanceof Uint8Array ? [source] : source;
    // Blocking writes into the page cache: a stream of 64 KiB network chunks paid a
    // thread-pool round trip each, and the socket sat paused meanwhile. Small chunks
    // (an encoder's frames) are gathered into 1 MiB writes.
    const writer = new GatheringWriter(handle.fd);
    for await (const chunk of chunks) {
      digester.update(chunk);
      if (expected?.size !== undefined && digester.size > expected.size) {
        throw new RootstockError("SIZE_MISMATCH", `${opts.what}: expected ${expected.size} bytes, got more`);
      }
      writer.write(chunk);
    }
    writer.flush();
    const actual = { digest: digester.digest(), size: digester.size };
    if (expected?.digest !== undefined)
      verifyDigest(actual, { digest: expected.digest, size: expected.size }, opts.what);
    else if (expected?.size !== undefined)
      verifyDigest(actual, { digest: actual.digest, size: expected.size }, opts.what);
    if (durable) await handle.sync();
    await handle.chmod(0o444);
    await handle.close();
    const target = opts.pathFor(actual.digest);
    const targetDir = dirname(target);
    // link() refuses to replace: a concurrent writer of the same object keeps its inode
    // (hardlinks taken from it stay valid); ours is then simply dropped.
    let existed = false;
    await inDir(targetDir, async () => {
      existed = linkOrKeep(tmp, target, actual.size);
    });
    committed = true;
    if (durable) await fsyncDir(targetDir);
    await rm(tmp, { force: true });
    return { ...actual, existed };
  } catch (err) {
    await handle.close().catch(() => {});
    if (!committed) await rm(tmp, { force: true });
    if (!(source instanceof Uint8Array)) await closeSource(source).catch(() => {});
    throw err;
  }
}

const WRITE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;

/** Creates a new ingest file in blocking calls: its name and an fd open for writing. */
export function openIngestSync(ingestDir: string): { fd: number; tmp: string } {
  const tmp = join(ingestDir, nextName());
  try {
    return { fd: openSync(tmp, WRITE_NEW, 0o444), tmp };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    forgetDir(ingestDir);
    mkdirSync(ingestDir, { recursive: true });
    return { fd: openSync(tmp, WRITE_NEW, 0o444), tmp };
  }
}

export function writeAllSync(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
}

const GATHER_BYTES = 1024 * 1024;

/** Blocking writes to `fd` where small chunks are copied into one buffer and written 1 MiB at a time. */
class GatheringWriter {
  private buffer: Uint8Array | undefined;
  private length = 0;

  constructor(private readonly fd: number) {}

  write(chunk: Uint8Array): void {
    if (chunk.length >= GATHER_BYTES / 4) {
      this.flush();
      writeAllSync(this.fd, chunk);
      return;
    }
    this.buffer ??= Buffer.allocUnsafe(GATHER_BYTES);
    if (this.length + chunk.length > GATHER_BYTES) this.flush();
    this.buffer.set(chunk, this.length);
    this.length += chunk.length;
  }

  flush(): void {
    if (this.length === 0 || !this.buffer) return;
    writeAllSync(this.fd, this.buffer.subarray(0, this.length));
    this.length = 0;
  }
}

/**
 * Links a complete, verified, closed ingest file into place in blocking calls and
 * removes the ingest name; whether an intact object was already there. `durable`
 * fsyncs the object's directory (the caller fsynced the file).
 */
export function commitIngestSync(tmp: string, target: string, size: number, durable: boolean): boolean {
  let existed = false;
  try {
    const dir = dirname(target);
    if (!knownDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      knownDirs.add(dir);
    }
    try {
      existed = linkOrKeep(tmp, target, size);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      // The fan-out directory vanished behind our back (a repair): make it again.
      forgetDir(dir);
      mkdirSync(dir, { recursive: true });
      existed = linkOrKeep(tmp, target, size);
    }
    if (durable && !existed) {
      const dfd = openSync(dir, "r");
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {}
  }
  return existed;
}

/**
 * `ingest` for bytes in memory, in blocking calls (stat, open, write, close, link,
 * unlink). A pull or import writes thousands of small objects: each async call is a
 * thread-pool round trip that costs more than the syscall. Used on the main thread
 * without fsync (nothing blocks for long), and by the file-writer workers.
 */
export function ingestBytesSync(bytes: Uint8Array, opts: IngestOptions): CommitResult {
  const { expected } = opts;
  const digest = sha256(bytes);
  verifyDigest(
    { digest, size: bytes.length },
    { digest: expected?.digest ?? digest, size: expected?.size },
    opts.what,
  );
  const target = opts.pathFor(digest);
  const present = statOrUndefined(target);
  if (present && present.size === bytes.length) return { digest, size: bytes.length, existed: true };
  const durable = opts.durable ?? true;
  const { fd, tmp } = openIngestSync(opts.ingestDir);
  try {
    writeAllSync(fd, bytes);
    if (durable) fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {}
    throw err;
  }
  closeSync(fd);
  const existed = commitIngestSync(tmp, target, bytes.length, durable);
  return { digest, size: bytes.length, existed };
}

export function statOrUndefined(path: string): { size: number } | undefined {
  // No exception for a missing name: building one costs more than the stat.
  return statSync(path, { throwIfNoEntry: false });
}

/**
 * Commits a complete, verified ingest file `tmp` whose content is `actual`: makes
 * it read-only, fsyncs it (when `durable`), links it into place (never replacing)
 * and removes the ingest name. For objects that did not arrive as a stream
 * (copied or hardlinked files).
 */
export async function commitIngestFile(
  tmp: string,
  actual: { digest: Digest; size: number },
  pathFor: (digest: Digest) => string,
  durable: boolean,
): Promise<CommitResult> {
  await chmod(tmp, 0o444);
  if (durable) {
    const handle = await open(tmp, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  const target = pathFor(actual.digest);
  let existed = false;
  await inDir(dirname(target), async () => {
    existed = linkOrKeep(tmp, target, actual.size);
  });
  if (durable) await fsyncDir(dirname(target));
  await rm(tmp, { force: true });
  return { ...actual, existed };
}

/**
 * Replaces `path` with `bytes` atomically (temp file in `ingestDir` + fsync + rename
 * + directory fsync): readers see the old or the new content, never a mix.
 */
export async function atomicWriteFile(
  path: string,
  bytes: Uint8Array,
  ingestDir: string,
  mode = 0o644,
): Promise<void> {
  const tmp = join(ingestDir, uniqueName());
  const handle = await inDir(ingestDir, () => open(tmp, "wx", mode));
  try {
    await writeAll(handle, bytes);
    await handle.sync();
    await handle.close();
    await inDir(dirname(path), () => rename(tmp, path));
    await fsyncDir(dirname(path));
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}
