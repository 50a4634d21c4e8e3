/**
 * Writes a merged entry list into a directory, safely: no entry can create or
 * change anything outside the target, whatever its name, type or link target.
 *
 * Safety rules (each refusal is a RootstockError naming the entry):
 * - names are cleaned by `cleanEntryPath` (no absolute names, "..", ".", empty
 *   components or NUL: UNSAFE_PATH);
 * - an entry's parent must be a directory entry of this same export, already
 *   written: every parent was made by our mkdir (or, with `force`, checked with
 *   lstat to be a real directory), so no path we write goes through a symlink;
 * - a hardlink must name a regular file already written by this export;
 * - duplicates are an error (the tree module merged the layers: later-wins is its job);
 * - an existing entry in the way (only with `force`) is unlinked, never written through;
 * - new files are opened O_CREAT|O_EXCL|O_NOFOLLOW, copies use COPYFILE_EXCL.
 *
 * Lifecycle: a target that does not exist is built as TARGET.rootstock-partial and
 * renamed into place when complete (atomic: the target is whole or absent). An
 * existing empty directory (or any directory with `force`) is written in place with
 * TARGET.rootstock-incomplete beside it until done. Both markers sit outside the
 * tree so the tree digest never sees them. A failed export removes its partial
 * directory; an interrupted one leaves the partial directory or the marker.
 *
 * Metadata: contents first, then lchown, chmod (after chown, which clears setuid),
 * times; devices and fifos in one `mknod` batch; xattrs in one `setfattr` batch
 * after every chown; directories last, deepest first, since creating children
 * changes their mtimes. Hardlinked store objects are never modified: a file is
 * linked only when the object already has the entry's mode, owner, mtime and no
 * xattrs are asked for; otherwise it is copied (reflinked where the filesystem can).
 */
import {
  type BigIntStats,
  chmodSync,
  constants,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  symlinkSync,
} from "node:fs";
import {
  chmod,
  copyFile,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  rename,
  rm,
  unlink,
} from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { RootstockError } from "../errors.js";
import type { ProgressSink } from "../progress.js";
import {
  cleanEntryPath,
  type ExportEntry,
  missingContent,
  mtimeSeconds,
  parentPath,
  pathDepth,
  sizedContent,
} from "./entry.js";
import { inodeMatches } from "./farm.js";
import { makeSpecialFiles, runTool, type SpecialFile } from "./special-files.js";
import { setXattrs, type XattrTarget } from "./xattr.js";

export const PARTIAL_SUFFIX = ".rootstock-partial";
export const INCOMPLETE_SUFFIX = ".rootstock-incomplete";
/** Independent file writes kept in flight: enough to keep libuv's thread pool and the disk busy. */
const MAX_IN_FLIGHT = 32;

export interface SafeDirOptions {
  /** Allow a non-empty target (entries in the way are replaced) or a leftover partial directory. */
  force?: boolean;
  /**
   * How files with a path source arrive: "hardlink" (instant, shares the read-only
   * store inode when its metadata matches) or "copy" (reflink where the filesystem
   * has it, else a copy).
   */
  content?: "hardlink" | "copy";
  /** Flush the filesystem (`sync -f`) before the export is declared complete. Default true. */
  durable?: boolean;
  progress?: ProgressSink;
}

export interface SkippedItem {
  path: string;
  what: "owner" | "device" | "xattr";
  reason: string;
}

export interface SafeDirResult {
  target: string;
  entries: number;
  /** Files hardlinked to their source. */
  linked: number;
  /** Files copied or reflinked from their source. */
  copied: number;
  /** Files written from bytes or streams. */
  written: number;
  /** What could not be applied (as non-root): every item with its reason. */
  skipped: SkippedItem[];
}

interface Identity {
  root: boolean;
  uid: number;
  gid: number;
}

function entryError(code: "UNSAFE_PATH" | "INVALID_ARGUMENT", path: string, why: string): RootstockError {
  return new RootstockError(code, `entry ${JSON.stringify(path)}: ${why}`);
}

export async function lstatOrUndefined(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Whether a store object already is what the entry asks for, so linking it changes nothing. */
function objectMatches(st: BigIntStats, entry: ExportEntry): boolean {
  // A farm object was made with the entry's xattrs; its mtime went through utimes (µs).
  if (entry.content?.kind === "path" && entry.content.prepared) return inodeMatches(st, entry);
  return (
    st.isFile() &&
    Number(st.mode & 0o7777n) === (entry.mode & 0o7777) &&
    Number(st.uid) === entry.uid &&
    Number(st.gid) === entry.gid &&
    st.mtimeNs === BigInt(entry.mtime.sec) * 1_000_000_000n + BigInt(entry.mtime.nsec) &&
    (entry.xattrs?.length ?? 0) === 0
  );
}

class DirWriter {
  /** Directories of this export (cleaned paths), all real directories we made or checked. */
  private readonly dirs = new Set<string>(["."]);
  /** Regular files written by this export: the only valid hardlink targets. */
  private readonly files = new Set<string>();
  private readonly seen = new Set<string>();
  private readonly dirEntries: Array<{ path: string; entry: ExportEntry }> = [];
  private readonly specials: Array<{ path: string; entry: ExportEntry }> = [];
  private readonly xattrTargets: XattrTarget[] = [];
  /** File and symlink writes in flight (independent of each other); a hardlink waits for its target's. */
  private readonly inflight = new Set<Promise<void>>();
  private readonly written = new Map<string, Promise<void>>();
  private syncOps = 0;
  readonly result: SafeDirResult;

  constructor(
    private readonly work: string,
    target: string,
    private readonly id: Identity,
    private readonly opts: SafeDirOptions,
    /** Whether entries may already exist on disk (a non-empty target with force). */
    private readonly mayExist: boolean,
  ) {
    this.result = { target, entries: 0, linked: 0, copied: 0, written: 0, skipped: [] };
  }

  private abs(path: string): string {
    return path === "." ? this.work : join(this.work, path);
  }

  /** Clears the way for a new entry: only with force into a non-empty target. Never follows a symlink. */
  private async clear(path: string, keepDir: boolean): Promise<boolean> {
    if (!this.mayExist) return false;
    const st = await lstatOrUndefined(this.abs(path));
    if (!st) return false;
    if (keepDir && st.isDirectory()) return true;
    // rm does not follow symlinks: a symlink or a hardlinked store file is unlinked, not written through.
    if (st.isDirectory()) await rm(this.abs(path), { recursive: true, force: true });
    else await unlink(this.abs(path));
    return false;
  }

  async add(entry: ExportEntry): Promise<void> {
    const path = cleanEntryPath(entry.path);
    if (this.seen.has(path)) throw entryError("INVALID_ARGUMENT", path, "duplicate entry");
    this.seen.add(path);
    this.result.entries++;
    if (path === ".") {
      if (entry.type !== "dir")
        throw entryError("UNSAFE_PATH", path, `the root must be a directory, not a ${entry.type}`);
      this.dirEntries.push({ path, entry });
      return;
    }
    const parent = parentPath(path);
    if (!this.dirs.has(parent)) {
      const why = this.seen.has(parent)
        ? `parent ${JSON.stringify(parent)} is not a directory of this export`
        : `parent ${JSON.stringify(parent)} must come earlier in the export`;
      throw entryError(this.seen.has(parent) ? "UNSAFE_PATH" : "INVALID_ARGUMENT", path, why);
    }
    const abs = this.abs(path);
    switch (entry.type) {
      case "dir": {
        if (!(await this.clear(path, true))) {
          // Synchronous like the link fast path: a directory is one tiny syscall.
          mkdirSync(abs, { mode: 0o700 });
          await this.yieldSometimes();
        }
        this.dirs.add(path);
        this.dirEntries.push({ path, entry });
        return;
      }
      case "file":
        await this.clear(path, false);
        this.files.add(path);
        // A stream must be consumed before the next entry is pulled (it may be the same archive).
        if (await this.linkInline(path, abs, entry)) return;
        if (entry.content?.kind === "stream") await this.writeFile(path, abs, entry);
        else this.written.set(path, (await this.launch(this.writeFile(path, abs, entry))).done);
        return;
      case "hardlink": {
        const target = cleanEntryPath(
          entry.linkTarget ?? "",
          `entry ${JSON.stringify(path)}: hardlink target`,
        );
        if (!this.files.has(target)) {
          throw entryError(
            "UNSAFE_PATH",
            path,
            `hardlink target ${JSON.stringify(target)} is not a regular file written earlier in this export`,
          );
        }
        await this.clear(path, false);
        await this.written.get(target);
        await link(this.abs(target), abs);
        return;
      }
      case "symlink": {
        const target = entry.linkTarget ?? "";
        if (target === "" || target.includes("\0")) {
          throw entryError("UNSAFE_PATH", path, "symlink target is empty or contains NUL");
        }
        await this.clear(path, false);
        // Synchronous like the link fast path: three tiny syscalls.
        symlinkSync(target, abs);
        if (this.id.root) lchownSync(abs, entry.uid, entry.gid);
        else await this.applyOwner(path, abs, entry);
        this.queueXattrs(path, abs, entry);
        lutimesSync(abs, mtimeSeconds(entry), mtimeSeconds(entry));
        await this.yieldSometimes();
        return;
      }
      case "char":
      case "block":
      case "fifo":
        await this.clear(path, false);
        // A farm object (checked by the farm): linked like a file; otherwise made by mknod.
        if (!(await this.linkInline(path, abs, entry))) this.specials.push({ path, entry });
        return;
    }
  }

  /** Tracks an independent write; waits when too many are in flight. Rejections surface in race or settle. */
  private async launch(work: Promise<void>): Promise<{ done: Promise<void> }> {
    const tracked = work.finally(() => this.inflight.delete(tracked));
    tracked.catch(() => {});
    this.inflight.add(tracked);
    if (this.inflight.size >= MAX_IN_FLIGHT) await Promise.race(this.inflight);
    return { done: tracked };
  }

  /** Waits for every write in flight; the first failure is thrown. */
  async drain(): Promise<void> {
    const results = await Promise.allSettled([...this.inflight]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /**
   * The hardlink fast path: lstat and link are tiny syscalls, and through the thread
   * pool their round trips cost more than the calls. Done synchronously, yielding to
   * the event loop every few hundred entries. False when the file needs a copy or a write.
   */
  private async linkInline(_path: string, abs: string, entry: ExportEntry): Promise<boolean> {
    const source = entry.content;
    if (source?.kind !== "path" || this.opts.content === "copy") return false;
    // Device nodes and fifos come only from the farm, which checked them.
    if (entry.type !== "file" && !source.prepared) return false;
    if (!source.prepared) {
      let st: BigIntStats;
      try {
        st = lstatSync(source.path, { bigint: true });
      } catch {
        return false; // the async path reports it
      }
      if (Number(st.size) !== entry.size || !objectMatches(st, entry)) return false;
    }
    try {
      linkSync(source.path, abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EXDEV" || code === "EMLINK" || code === "EPERM") return false;
      throw err;
    }
    if (entry.type === "file") this.result.linked++;
    await this.yieldSometimes();
    return true;
  }

  /** Lets the event loop run between runs of synchronous syscalls. */
  private async yieldSometimes(): Promise<void> {
    if (++this.syncOps % 256 === 0) await new Promise((resolve) => setImmediate(resolve));
  }

  private async writeFile(path: string, abs: string, entry: ExportEntry): Promise<void> {
    const source = entry.content;
    if (source?.kind === "path") {
      const st = await lstatOrUndefined(source.path);
      if (!st) throw missingContent({ code: "ENOENT" }, source.path, path);
      if (!st.isFile())
        throw entryError("INVALID_ARGUMENT", path, `content ${source.path} is not a regular file`);
      if (Number(st.size) !== entry.size) {
        throw new RootstockError(
          "SIZE_MISMATCH",
          `entry ${JSON.stringify(path)}: content ${source.path} has ${st.size} bytes, declared ${entry.size}`,
        );
      }
      if (this.opts.content !== "copy" && objectMatches(st, entry)) {
        try {
          await link(source.path, abs);
          this.result.linked++;
          return;
        } catch (err) {
          // Another filesystem or too many links: copy instead.
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== "EXDEV" && code !== "EMLINK" && code !== "EPERM") throw err;
        }
      }
      await copyFile(source.path, abs, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      this.result.copied++;
    } else {
      const handle = await open(
        abs,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        for await (const chunk of sizedContent(entry)) await handle.write(chunk);
      } finally {
        await handle.close();
      }
      this.result.written++;
    }
    await this.applyOwner(path, abs, entry);
    await chmod(abs, entry.mode & 0o7777);
    this.queueXattrs(path, abs, entry);
    await lutimes(abs, mtimeSeconds(entry), mtimeSeconds(entry));
  }

  private async applyOwner(path: string, abs: string, entry: ExportEntry): Promise<void> {
    if (this.id.root) {
      await lchown(abs, entry.uid, entry.gid);
    } else if (entry.uid !== this.id.uid || entry.gid !== this.id.gid) {
      this.result.skipped.push({
        path,
        what: "owner",
        reason: `owner ${entry.uid}:${entry.gid} needs root`,
      });
    }
  }

  private queueXattrs(path: string, abs: string, entry: ExportEntry): void {
    const xattrs = entry.xattrs ?? [];
    if (xattrs.length === 0) return;
    if (this.id.root) {
      this.xattrTargets.push({ path: abs, xattrs });
      return;
    }
    // Unprivileged processes may only set user.* attributes (and not on symlinks).
    const allowed = entry.type === "symlink" ? [] : xattrs.filter(([name]) => name.startsWith("user."));
    for (const [name] of xattrs) {
      if (!allowed.some(([n]) => n === name)) {
        this.result.skipped.push({ path, what: "xattr", reason: `xattr ${name} needs root` });
      }
    }
    if (allowed.length > 0) this.xattrTargets.push({ path: abs, xattrs: allowed });
  }

  /** Devices and fifos in one mknod run (Node has no mknod), then their metadata. */
  private async makeSpecials(): Promise<void> {
    const nodes: SpecialFile[] = [];
    const made: Array<{ path: string; entry: ExportEntry }> = [];
    for (const item of this.specials) {
      const { entry } = item;
      if (entry.type !== "fifo" && !this.id.root) {
        this.result.skipped.push({
          path: item.path,
          what: "device",
          reason: "creating device nodes needs root",
        });
        continue;
      }
      nodes.push({
        path: this.abs(item.path),
        type: entry.type as SpecialFile["type"],
        major: entry.devmajor ?? 0,
        minor: entry.devminor ?? 0,
      });
      made.push(item);
    }
    await makeSpecialFiles(nodes);
    for (const { path, entry } of made) {
      const abs = this.abs(path);
      await this.applyOwner(path, abs, entry);
      await chmod(abs, entry.mode & 0o7777);
      this.queueXattrs(path, abs, entry);
      await lutimes(abs, mtimeSeconds(entry), mtimeSeconds(entry));
    }
  }

  async finish(): Promise<void> {
    await this.drain();
    await this.makeSpecials();
    // Directory owner and xattrs before the xattr batch; modes and times after it.
    const dirs = [...this.dirEntries].sort((a, b) => pathDepth(b.path) - pathDepth(a.path));
    for (const { path, entry } of dirs) {
      const abs = this.abs(path);
      if (this.id.root) lchownSync(abs, entry.uid, entry.gid);
      else await this.applyOwner(path, abs, entry);
      this.queueXattrs(path, abs, entry);
      await this.yieldSometimes();
    }
    await setXattrs(this.xattrTargets);
    for (const { path, entry } of dirs) {
      const abs = this.abs(path);
      chmodSync(abs, entry.mode & 0o7777);
      lutimesSync(abs, mtimeSeconds(entry), mtimeSeconds(entry));
      await this.yieldSometimes();
    }
  }
}

/**
 * Writes `entries` (parents before children, hardlink targets before their links)
 * into `target`. See the module comment for the rules and the lifecycle.
 */
export async function writeDirectory(
  target: string,
  entries: Iterable<ExportEntry> | AsyncIterable<ExportEntry>,
  opts: SafeDirOptions = {},
): Promise<SafeDirResult> {
  const targetPath = resolve(target);
  if (basename(targetPath) === "" || targetPath === "/") {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `export target ${JSON.stringify(target)} cannot be the root directory`,
    );
  }
  const parentStat = await lstatOrUndefined(dirname(targetPath));
  if (!parentStat?.isDirectory()) {
    throw new RootstockError("NOT_FOUND", `export target ${targetPath}: parent directory does not exist`);
  }
  const uid = process.getuid?.() ?? 0;
  const id: Identity = { root: uid === 0, uid, gid: process.getgid?.() ?? 0 };
  const force = opts.force ?? false;

  let existing = await lstatOrUndefined(targetPath);
  if (existing?.isSymbolicLink()) {
    throw new RootstockError(
      "UNSAFE_PATH",
      `export target ${targetPath} is a symlink; refusing to follow it`,
    );
  }
  if (existing && !existing.isDirectory()) {
    if (!force)
      throw new RootstockError("ALREADY_EXISTS", `export target ${targetPath} exists and is not a directory`);
    await unlink(targetPath);
    existing = undefined;
  }

  const progress = opts.progress;
  progress?.({ type: "start", id: "export-dir", label: `export to ${targetPath}`, unit: "files" });
  let writer: DirWriter;
  let marker: string | undefined;
  let partial: string | undefined;
  if (existing) {
    const nonEmpty = (await readdir(targetPath)).length > 0;
    if (nonEmpty && !force) {
      throw new RootstockError(
        "ALREADY_EXISTS",
        `export target ${targetPath} is not empty (--force replaces entries)`,
      );
    }
    marker = targetPath + INCOMPLETE_SUFFIX;
    await writeMarker(marker);
    writer = new DirWriter(targetPath, targetPath, id, opts, nonEmpty);
  } else {
    partial = targetPath + PARTIAL_SUFFIX;
    const leftover = await lstatOrUndefined(partial);
    if (leftover) {
      if (!force) {
        throw new RootstockError(
          "ALREADY_EXISTS",
          `${partial} exists: left by an interrupted export (remove it, or --force)`,
        );
      }
      await rm(partial, { recursive: true, force: true });
    }
    await mkdir(partial, { mode: 0o700 });
    writer = new DirWriter(partial, targetPath, id, opts, false);
  }

  try {
    let count = 0;
    for await (const entry of entries) {
      await writer.add(entry);
      if (++count % 1000 === 0) progress?.({ type: "advance", id: "export-dir", current: count });
    }
    await writer.finish();
    if (opts.durable ?? true) await runTool("sync", ["-f", partial ?? targetPath], "sync");
  } catch (err) {
    // Let writes in flight end before removing anything under them.
    await writer.drain().catch(() => {});
    // A failed fresh export leaves nothing; an in-place one keeps its incomplete marker.
    if (partial) await rm(partial, { recursive: true, force: true });
    throw err;
  }
  if (partial) {
    await rename(partial, targetPath);
  } else if (marker) {
    await unlink(marker);
  }
  progress?.({ type: "done", id: "export-dir", summary: `${writer.result.entries} entries` });
  return writer.result;
}

async function writeMarker(path: string): Promise<void> {
  const st = await lstatOrUndefined(path);
  if (st && !st.isFile()) throw new RootstockError("UNSAFE_PATH", `${path} exists and is not a regular file`);
  const handle = await open(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    await handle.write("rootstock export in progress: this directory is incomplete\n");
  } finally {
    await handle.close();
  }
}

/** Whether `target` holds a finished export: it exists and no incomplete marker sits beside it. */
export async function isCompleteExport(target: string): Promise<boolean> {
  const targetPath = resolve(target);
  const st = await lstatOrUndefined(targetPath);
  return !!st?.isDirectory() && !(await lstatOrUndefined(targetPath + INCOMPLETE_SUFFIX));
}
