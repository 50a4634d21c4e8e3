/**
 * The hardlink farm: what makes `export --format dir` instant and exact. A cas file
 * object is content only (0444, root, some mtime); an inode carries one mode, owner,
 * mtime and xattr set, so a rootfs cannot be hardlinked to file objects without
 * changing them. Like ostree's bare mode, the farm keeps one inode per
 * (content, mode, uid, gid, mtime, xattrs): made once (a reflink or copy of the file
 * object, then chown, chmod, xattrs, utimes) on the first export that needs it, and
 * hardlinked by every later export of any image with that file.
 *
 *   <store>/farm/v1/<key[0:2]>/<key[2:]>    key = sha256 of the metadata line below
 *   <store>/farm/tmp/<pid>-<random>-<n>     objects being made (a killed export's leftovers)
 *
 * Objects appear atomically: made under tmp/, then renamed into place (an equal
 * object a concurrent maker placed first is replaced; an export that linked it keeps
 * it). The farm is a cache: `pruneFarm` (run by `store gc`) removes objects no export
 * links any more (nlink 1) and leftovers; it can be deleted whole when no export runs.
 *
 * Contract (as for `ostree checkout -H`): a hardlinked export is read-only. Writing
 * into one of its files writes into the farm object and every export sharing it.
 * Use `--copy` for a tree that will be modified.
 */
import { hash, randomBytes } from "node:crypto";
import {
  type BigIntStats,
  chmodSync,
  constants,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  type Stats,
  unlinkSync,
} from "node:fs";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { forEachLimit } from "../concurrency.js";
import type { Digest } from "../oci/digest.js";
import type { TreeNode } from "../tree/index.js";
import { missingContent, mtimeSeconds } from "./entry.js";
import { makeSpecialFiles, type SpecialFile } from "./special-files.js";
import { setXattrs } from "./xattr.js";

const FARM_VERSION = "v1";
/** File objects copied at once (libuv's pool has four threads; this VM two cores). */
const COPIES_IN_FLIGHT = 4;

export interface FarmStats {
  /** Objects found already made. */
  reused: number;
  /** Objects made by this export. */
  made: number;
}

/** Node types the farm holds: regular files by content, device nodes and fifos by number. */
export function farmHolds(node: TreeNode): boolean {
  return node.type === "file"
    ? node.size > 0
    : node.type === "char" || node.type === "block" || node.type === "fifo";
}

/** The metadata a farm object is keyed by (and checked against before linking). */
function metadataLine(node: TreeNode): string {
  const what = node.type === "file" ? node.digest : `${node.type}:${node.devmajor}:${node.devminor}`;
  let line = `${what} ${(node.mode & 0o7777).toString(8)} ${node.uid} ${node.gid} ${node.mtime.sec} ${node.mtime.nsec}`;
  for (const [name, value] of node.xattrs) line += ` ${name}=${Buffer.from(value).toString("base64")}`;
  return line;
}

/**
 * Farm keys (sha256 hex of the metadata line) of a tree's nodes the farm holds, given
 * in the tree's path order. Two distinct inodes with equal content and metadata (two
 * separate files, not hard links) must stay two inodes in the export, or the export
 * would gain hard links the image does not have: the k-th such node of a tree gets
 * the k-th variant object. The keys depend on the tree alone (nodes sharing a line
 * share owner and xattrs, so every process holds all of them or none): the tree
 * cache keeps them.
 */
export function farmKeys(nodes: Iterable<TreeNode>): Map<TreeNode, string> {
  const seen = new Map<string, number>();
  const out = new Map<TreeNode, string>();
  for (const node of nodes) {
    if (out.has(node)) continue;
    const line = metadataLine(node);
    const variant = seen.get(line) ?? 0;
    seen.set(line, variant + 1);
    out.set(node, hash("sha256", variant === 0 ? line : `${line} #${variant}`, "hex"));
  }
  return out;
}

/** Linux's dev_t encoding (glibc's gnu_dev_major/minor). */
function deviceNumbers(rdev: number): [major: number, minor: number] {
  const high = Math.floor(rdev / 2 ** 32);
  const low = rdev % 2 ** 32;
  return [((low >>> 8) & 0xfff) | ((high & ~0xfff) >>> 0), (low & 0xff) | ((low >>> 12) & ~0xff)];
}

/** Whether an inode is of the node's type (and device numbers) with its mode, owner and mtime (µs: what utimes can set). */
export function inodeMatches(
  st: Stats | BigIntStats,
  node: {
    type: string;
    mode: number;
    uid: number;
    gid: number;
    mtime: { sec: number; nsec: number };
    devmajor?: number;
    devminor?: number;
  },
): boolean {
  switch (node.type) {
    case "file":
      if (!st.isFile()) return false;
      break;
    case "fifo":
      if (!st.isFIFO()) return false;
      break;
    case "char":
    case "block": {
      if (node.type === "char" ? !st.isCharacterDevice() : !st.isBlockDevice()) return false;
      const [major, minor] = deviceNumbers(Number(st.rdev));
      if (major !== (node.devmajor ?? 0) || minor !== (node.devminor ?? 0)) return false;
      break;
    }
    default:
      return false;
  }
  if ((Number(st.mode) & 0o7777) !== (node.mode & 0o7777)) return false;
  if (Number(st.uid) !== node.uid || Number(st.gid) !== node.gid) return false;
  if (typeof st.mtimeMs === "bigint") {
    const diff =
      (st as BigIntStats).mtimeNs - (BigInt(node.mtime.sec) * 1_000_000_000n + BigInt(node.mtime.nsec));
    return diff > -2000n && diff < 2000n;
  }
  // A double holds today's times in ms to ~0.25 µs, well inside the 2 µs allowed.
  const diffMs = st.mtimeMs - (node.mtime.sec * 1e3 + node.mtime.nsec / 1e6);
  return diffMs > -0.002 && diffMs < 0.002;
}

export class LinkFarm {
  readonly root: string;
  private readonly tmpDir: string;
  // Temporary names: one random part per farm, then a count (a random draw per object cost ~16 µs).
  private readonly tmpPrefix = `${process.pid}-${randomBytes(6).toString("hex")}`;
  private tmpCount = 0;
  private readonly madeDirs = new Set<string>();
  readonly stats: FarmStats = { reused: 0, made: 0 };
  private readonly root_: boolean;
  private readonly uid: number;
  private readonly gid: number;

  constructor(storeRoot: string) {
    this.root = join(storeRoot, "farm", FARM_VERSION);
    this.tmpDir = join(storeRoot, "farm", "tmp");
    mkdirSync(this.root, { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
    this.uid = process.getuid?.() ?? 0;
    this.gid = process.getgid?.() ?? 0;
    this.root_ = this.uid === 0;
  }

  /** Whether this process can make an inode with the node's metadata at all. */
  canHold(node: TreeNode): boolean {
    if (!farmHolds(node)) return false;
    // user.* attributes exist only on files and directories; the writer reports them.
    if (node.type !== "file" && node.xattrs.length > 0) return false;
    if (this.root_) return true;
    if (node.type === "char" || node.type === "block") return false;
    if (node.uid !== this.uid || node.gid !== this.gid) return false;
    return node.xattrs.every(([name]) => name.startsWith("user."));
  }

  /** Farm paths for a tree's file nodes (in the tree's path order): see `farmKeys`. */
  assign(nodes: Iterable<TreeNode>): Map<TreeNode, string> {
    const out = new Map<TreeNode, string>();
    for (const [node, key] of farmKeys(nodes)) out.set(node, this.pathOf(key));
    return out;
  }

  /** Where the object with farm key `key` lives. */
  pathOf(key: string): string {
    return `${this.root}/${key.slice(0, 2)}/${key.slice(2)}`;
  }

  /** The farm object at `path` if it exists with the node's metadata, else undefined. */
  lookup(node: TreeNode, path: string): string | undefined {
    // Plain (not bigint) stats: a farm lookup is one lstat per file of the export.
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st) return undefined;
    if (!inodeMatches(st, node) || (node.type === "file" && st.size !== node.size)) {
      // Tampered with (chmod/touch through an export): drop it, it will be made again.
      rmSync(path, { force: true });
      return undefined;
    }
    this.stats.reused++;
    return path;
  }

  /**
   * Makes the objects for `nodes` (node → its assigned farm path; content at
   * `contentPath(digest)`), in one batch so xattrs take one setfattr run.
   */
  async make(
    nodes: Iterable<[TreeNode, string]>,
    contentPath: (digest: Digest) => string,
  ): Promise<Map<TreeNode, string>> {
    const made = new Map<TreeNode, string>();
    const pending: Array<{ node: TreeNode; tmp: string; final: string }> = [];
    const placed = new Set<string>();
    const xattrTargets: Array<{ path: string; xattrs: Array<[string, Uint8Array]> }> = [];
    try {
      const specials: SpecialFile[] = [];
      const copies: Array<{ content: string; tmp: string }> = [];
      for (const [node, final] of nodes) {
        const tmp = join(this.tmpDir, `${this.tmpPrefix}-${this.tmpCount++}`);
        if (node.type === "file") {
          copies.push({ content: contentPath(node.digest!), tmp });
        } else {
          specials.push({
            path: tmp,
            type: node.type as SpecialFile["type"],
            major: node.devmajor,
            minor: node.devminor,
          });
        }
        pending.push({ node, tmp, final });
      }
      // Copies in the thread pool, both cores busy: copying into the page cache is most
      // of a first export's time (measured: 7,510 objects, 1.55 s in turn).
      await forEachLimit(copies, COPIES_IN_FLIGHT, ({ content, tmp }) =>
        copyFile(content, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE).catch((err: unknown) => {
          throw missingContent(err, content);
        }),
      );
      await makeSpecialFiles(specials);
      for (const { node, tmp } of pending) {
        if (this.root_) lchownSync(tmp, node.uid, node.gid);
        if (node.xattrs.length > 0) {
          // Setting user.* attributes needs write permission when not root.
          if (!this.root_) chmodSync(tmp, 0o600);
          xattrTargets.push({ path: tmp, xattrs: node.xattrs });
        }
      }
      // After chown (which clears security.capability), before chmod (setuid survives).
      await setXattrs(xattrTargets);
      for (const { node, tmp, final } of pending) {
        chmodSync(tmp, node.mode & 0o7777);
        lutimesSync(tmp, mtimeSeconds(node), mtimeSeconds(node));
        const dir = final.slice(0, final.lastIndexOf("/"));
        if (!this.madeDirs.has(dir)) {
          mkdirSync(dir, { recursive: true });
          this.madeDirs.add(dir);
        }
        // Atomic; an equal object another export made meanwhile is simply replaced
        // (an export that linked it keeps its inode, which is as good as ours).
        renameSync(tmp, final);
        placed.add(tmp);
        this.stats.made++;
        made.set(node, final);
      }
    } finally {
      for (const { tmp } of pending) if (!placed.has(tmp)) rmSync(tmp, { force: true });
    }
    return made;
  }
}

/** Each farm object with its stats: what `pruneFarm` and `farmUsage` walk. */
function* farmObjects(storeRoot: string): Generator<{ path: string; st: Stats }> {
  const root = join(storeRoot, "farm", FARM_VERSION);
  for (const sub of safeReaddir(root)) {
    for (const name of safeReaddir(join(root, sub))) {
      const path = join(root, sub, name);
      yield { path, st: lstatSync(path) };
    }
  }
}

/**
 * Removes farm objects no export links any more (nlink 1), and leftovers of killed
 * exports. Run it with no export running (the store's exclusive lock: `store gc`).
 * `dryRun` counts without removing.
 */
export function pruneFarm(
  storeRoot: string,
  opts: { dryRun?: boolean } = {},
): { removed: number; kept: number; bytes: number } {
  let removed = 0;
  let kept = 0;
  let bytes = 0;
  if (!opts.dryRun) rmSync(join(storeRoot, "farm", "tmp"), { recursive: true, force: true });
  for (const { path, st } of farmObjects(storeRoot)) {
    if (st.nlink <= 1) {
      if (!opts.dryRun) unlinkSync(path);
      removed++;
      bytes += st.size;
    } else kept++;
  }
  return { removed, kept, bytes };
}

export interface FarmUsage {
  /** Farm objects, their sizes and the blocks they hold (an export's hard links add none). */
  count: number;
  bytes: number;
  storedBytes: number;
  /** Objects no export links any more: what `store gc` would remove. */
  unlinked: number;
  unlinkedBytes: number;
}

/** What the farm holds on disk: it is a second copy of every exported file's content (see the top). */
export function farmUsage(storeRoot: string): FarmUsage {
  const usage: FarmUsage = { count: 0, bytes: 0, storedBytes: 0, unlinked: 0, unlinkedBytes: 0 };
  for (const { st } of farmObjects(storeRoot)) {
    usage.count++;
    usage.bytes += st.size;
    usage.storedBytes += st.blocks * 512;
    if (st.nlink <= 1) {
      usage.unlinked++;
      usage.unlinkedBytes += st.size;
    }
  }
  return usage;
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}
