/**
 * scan(dir): a directory on disk → Tree. lstat only (symlinks are never followed),
 * stays on the directory's filesystem unless asked, hard links found by (dev, ino),
 * extended attributes through getfattr, file contents hashed in parallel.
 */
import { type BigIntStats, lstatSync, readdirSync, readlinkSync, realpathSync } from "node:fs";
import { RootstockError } from "../errors.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { type HashJob, hashFiles } from "./hash.js";
import { joinPath } from "./path.js";
import { type NodeType, sortXattrs, Tree, type TreeNode } from "./tree.js";
import { readXattrs } from "./xattr.js";

export interface ScanOptions {
  /** Hash file contents (default true). Without it, files have no `digest` until hashTree(). */
  hash?: boolean;
  /** Read extended attributes (default true). */
  xattrs?: boolean;
  /** Descend into directories on other filesystems (default false: like tar --one-file-system). */
  crossMounts?: boolean;
  /** Hashing threads (default: one per core). */
  concurrency?: number;
  progress?: ProgressSink;
}

export interface ScanReport {
  /** Entries left out, with why: sockets, mount point contents. */
  skipped: Array<{ path: string; reason: string }>;
  files: number;
  directories: number;
  /** Content bytes of distinct files (hard links counted once). */
  bytes: number;
}

const S_IFMT = 0o170000n;
const TYPES = new Map<bigint, NodeType | "socket">([
  [0o100000n, "file"],
  [0o040000n, "dir"],
  [0o120000n, "symlink"],
  [0o020000n, "char"],
  [0o060000n, "block"],
  [0o010000n, "fifo"],
  [0o140000n, "socket"],
]);

/** Linux's dev_t split (glibc gnu_dev_major/minor). */
function devMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
function devMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

function nodeFromStat(st: BigIntStats, type: NodeType): TreeNode {
  const ns = st.mtimeNs;
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  const device = type === "char" || type === "block";
  return {
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: { sec: Number(sec), nsec: Number(nsec) },
    size: type === "file" ? Number(st.size) : 0,
    devmajor: device ? devMajor(st.rdev) : 0,
    devminor: device ? devMinor(st.rdev) : 0,
    xattrs: [],
  };
}

/** A Node fs error as a one-line RootstockError naming the path. */
function fsError(err: unknown, path: string): RootstockError {
  if (err instanceof RootstockError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code === "ENOENT" ? "does not exist" : (err as Error).message;
  return new RootstockError(
    code === "ENOENT"
      ? "NOT_FOUND"
      : code === "EACCES" || code === "EPERM"
        ? "PERMISSION"
        : "INVALID_ARGUMENT",
    `scan: ${path}: ${reason}`,
    { cause: err },
  );
}

/** Names in a directory, refusing names that are not UTF-8 (they could not round-trip). */
function listDir(abs: string, rel: string): string[] {
  const names = readdirSync(abs);
  if (names.some((n) => n.includes("\uFFFD"))) {
    for (const raw of readdirSync(abs, { encoding: "buffer" })) {
      if (Buffer.compare(Buffer.from(raw.toString("utf8"), "utf8"), raw) !== 0) {
        throw new RootstockError(
          "INVALID_FORMAT",
          `${JSON.stringify(joinPath(rel, raw.toString("utf8")))}: file name is not valid UTF-8`,
        );
      }
    }
  }
  return names;
}

export async function scan(
  dir: string,
  options: ScanOptions = {},
): Promise<{ tree: Tree; report: ScanReport }> {
  const progress = options.progress ?? silentProgress;
  const report: ScanReport = { skipped: [], files: 0, directories: 0, bytes: 0 };
  let rootAbs: string;
  let rootStat: BigIntStats;
  try {
    // The directory argument itself may be a symlink (like tar -C); nothing below it is followed.
    rootAbs = realpathSync(dir);
    rootStat = lstatSync(rootAbs, { bigint: true });
  } catch (err) {
    throw fsError(err, dir);
  }
  if (TYPES.get(rootStat.mode & S_IFMT) !== "dir") {
    throw new RootstockError("INVALID_ARGUMENT", `scan: ${rootAbs} is not a directory`);
  }
  const absOf = (rel: string) => (rel === "" ? rootAbs : rootAbs === "/" ? `/${rel}` : `${rootAbs}/${rel}`);
  progress({ type: "start", id: "tree-scan", label: `scan ${rootAbs}`, unit: "files" });

  const tree = new Tree(nodeFromStat(rootStat, "dir"));
  const inodes = new Map<string, TreeNode>();
  const toHash: HashJob[] = [];
  const allPaths: string[] = [""];
  const stack: string[] = [""];
  while (stack.length > 0) {
    const dirRel = stack.pop()!;
    report.directories++;
    let names: string[];
    try {
      names = listDir(absOf(dirRel), dirRel);
    } catch (err) {
      throw fsError(err, absOf(dirRel));
    }
    for (const name of names) {
      const rel = joinPath(dirRel, name);
      let st: BigIntStats;
      try {
        st = lstatSync(absOf(rel), { bigint: true });
      } catch (err) {
        throw fsError(err, absOf(rel));
      }
      const type = TYPES.get(st.mode & S_IFMT);
      if (type === undefined || type === "socket") {
        report.skipped.push({ path: rel, reason: type === "socket" ? "socket" : "unknown file type" });
        continue;
      }
      let node: TreeNode;
      const key = `${st.dev}:${st.ino}`;
      const linked = type !== "dir" && st.nlink > 1n ? inodes.get(key) : undefined;
      if (linked) {
        node = linked;
      } else {
        node = nodeFromStat(st, type);
        if (type !== "dir" && st.nlink > 1n) inodes.set(key, node);
        if (type === "symlink") node.linkTarget = readlinkSync(absOf(rel));
        if (type === "file") {
          report.files++;
          report.bytes += node.size;
          toHash.push({ abs: absOf(rel), node });
        }
      }
      tree.set(rel, node);
      allPaths.push(rel);
      if (type === "dir") {
        if (st.dev !== rootStat.dev && !options.crossMounts) {
          report.skipped.push({
            path: rel,
            reason: "mount point: contents on another filesystem not scanned",
          });
        } else {
          stack.push(rel);
        }
      }
    }
    if (report.directories % 256 === 0) {
      progress({ type: "advance", id: "tree-scan", current: allPaths.length });
      // The walk is synchronous (fastest for lstat); let timers and I/O run now and then.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  for (const { path, reason } of report.skipped)
    progress({ type: "note", message: `skipped ${path}: ${reason}` });
  progress({ type: "done", id: "tree-scan", summary: `${allPaths.length} entries` });

  // getfattr (another process) runs while the workers hash.
  const xattrsRead = options.xattrs === false ? undefined : readXattrs(allPaths.map(absOf));
  xattrsRead?.catch(() => {}); // awaited below; avoid an unhandled rejection if hashing fails first
  if (options.hash !== false) await hashFiles(toHash, { concurrency: options.concurrency, progress });
  if (xattrsRead) {
    const prefix = rootAbs === "/" ? "/" : `${rootAbs}/`;
    for (const [abs, xattrs] of await xattrsRead) {
      const rel = abs === rootAbs ? "" : abs.startsWith(prefix) ? abs.slice(prefix.length) : undefined;
      const node = rel === undefined ? undefined : tree.get(rel);
      if (node) node.xattrs = sortXattrs(xattrs);
    }
  }
  return { tree, report };
}

/**
 * Hashes regular files in `dir` for every file node of `tree` that has no digest yet
 * (after scan({hash: false})).
 */
export async function hashTree(
  dir: string,
  tree: Tree,
  options: Pick<ScanOptions, "concurrency" | "progress"> = {},
) {
  const rootAbs = dir.replace(/\/+$/, "") || "/";
  const jobs: HashJob[] = [];
  const seen = new Set<TreeNode>();
  for (const [path, node] of tree.entries()) {
    if (node.type !== "file" || node.digest || seen.has(node)) continue;
    seen.add(node);
    jobs.push({ abs: rootAbs === "/" ? `/${path}` : `${rootAbs}/${path}`, node });
  }
  await hashFiles(jobs, { concurrency: options.concurrency, progress: options.progress ?? silentProgress });
}
