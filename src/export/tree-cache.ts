/**
 * An image's merged tree, kept in the store once every layer has a record: a
 * metadata document keyed by the image's manifest digest, its rows in one zstd
 * blob, with the tree digest. Every later export or digest of the image reads that
 * one blob instead of reading each layer record, merging the layers and hashing the
 * tree again (the reference image: ~60 ms instead of ~250).
 *
 * The tree is a pure function of the manifest (its layers, in order), so the cache
 * never goes stale; gc keeps it exactly as long as the manifest is reachable, and
 * drops it with the image. A cache that does not read back as a tree is STORE_CORRUPT,
 * like a bad layer record. Rows are in `sortedPaths` order, so reading needs no sort:
 *
 *   [path, type, mode, uid, gid, mtime s, mtime ns, size, sha256 hex | "",
 *    link target | "", major, minor, [[xattr name, base64 value]...], same, farm key | ""]
 *
 * `same` is the index of an earlier row whose node this path shares (a hard link), or
 * -1. The farm key names the node's hardlink farm object (farm.ts `farmKeys`, a pure
 * function of the tree) and the document keeps the tree's inventory: a hardlink
 * checkout of the image (checkout.ts) reads this one blob and computes nothing.
 */
import type { ContentStore } from "../cas/store.js";
import { zstdCompress, zstdDecompress } from "../compress/zstd.js";
import { RootstockError } from "../errors.js";
import { summariseTree, type TreeInventory } from "../image/inventory.js";
import { type Digest, isDigest } from "../oci/digest.js";
import { type NodeType, Tree, type TreeNode, type Xattr } from "../tree/index.js";
import { farmHolds, farmKeys } from "./farm.js";

// Decodes in place (Buffer.from would copy the decompressed rows first).
const utf8 = new TextDecoder();

const KIND = "rootstock image tree";
const VERSION = 2;

interface CacheDocument {
  kind: typeof KIND;
  version: number;
  treeDigest: Digest;
  inventory: TreeInventory;
  rows: { digest: Digest; size: number };
}

type Row = [
  path: string,
  type: NodeType,
  mode: number,
  uid: number,
  gid: number,
  sec: number,
  nsec: number,
  size: number,
  digestHex: string,
  linkTarget: string,
  major: number,
  minor: number,
  xattrs: Array<[string, string]>,
  same: number,
  farmKey: string,
];

const TYPES = new Set<string>(["file", "dir", "symlink", "char", "block", "fifo"]);
const HEX64 = /^[0-9a-f]{64}$/;

export interface CachedTree {
  tree: Tree;
  treeDigest: Digest;
}

/** The cached tree as its sorted (path, node) pairs, hard links sharing one node: no Tree built. */
export interface CachedEntries {
  entries: Array<[string, TreeNode]>;
  treeDigest: Digest;
  inventory: TreeInventory;
  /** Farm key of every node the farm holds (farm.ts `farmKeys`). */
  farmKeys: Map<TreeNode, string>;
}

function rowsOf(tree: Tree): Row[] {
  const index = new Map<TreeNode, number>();
  const paths = tree.sortedPaths();
  const keys = farmKeys(paths.map((path) => tree.get(path)!).filter(farmHolds));
  return paths.map((path, i): Row => {
    const node = tree.get(path)!;
    const same = index.get(node);
    if (same === undefined) index.set(node, i);
    return [
      path,
      node.type,
      node.mode,
      node.uid,
      node.gid,
      node.mtime.sec,
      node.mtime.nsec,
      node.size,
      node.digest ? node.digest.slice(7) : "",
      node.linkTarget ?? "",
      node.devmajor,
      node.devminor,
      node.xattrs.map(([name, value]) => [name, Buffer.from(value).toString("base64")]),
      same ?? -1,
      keys.get(node) ?? "",
    ];
  });
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function nodeOf(row: unknown, i: number, what: string): TreeNode {
  const fail = (why: string): never => {
    throw new RootstockError("STORE_CORRUPT", `${what}: row ${i}: ${why}`);
  };
  if (!Array.isArray(row) || row.length !== 15) return fail("not a row");
  const [path, type, mode, uid, gid, sec, nsec, size, hex, link, major, minor, xattrs] = row as Row;
  if (typeof path !== "string") fail("no path");
  if (!TYPES.has(type)) fail(`type ${JSON.stringify(type)}`);
  const counts =
    isCount(mode) && isCount(uid) && isCount(gid) && isCount(size) && isCount(major) && isCount(minor);
  if (!counts || !isCount(nsec) || !Number.isSafeInteger(sec)) fail("bad number");
  if (mode > 0o7777 || nsec >= 1e9) fail("mode or time out of range");
  if (typeof hex !== "string" || typeof link !== "string" || !Array.isArray(xattrs)) fail("bad field");
  const node: TreeNode = {
    type,
    mode,
    uid,
    gid,
    mtime: { sec, nsec },
    size: type === "file" ? size : 0,
    devmajor: major,
    devminor: minor,
    xattrs:
      xattrs.length === 0
        ? []
        : xattrs.map((x): Xattr => {
            if (!Array.isArray(x) || typeof x[0] !== "string" || typeof x[1] !== "string")
              return fail("bad xattr");
            return [x[0], Buffer.from(x[1], "base64")];
          }),
  };
  if (type === "file") {
    if (!HEX64.test(hex)) fail("file without sha256");
    node.digest = `sha256:${hex}`;
  }
  if (type === "symlink") node.linkTarget = link;
  return node;
}

/** The cached tree of the image with manifest `manifest`, or undefined when none is kept. */
export async function readCachedTree(store: ContentStore, manifest: Digest): Promise<CachedTree | undefined> {
  const cached = await readCachedEntries(store, manifest);
  return cached && { tree: treeOfCached(cached, manifest), treeDigest: cached.treeDigest };
}

/** The Tree of entries read by `readCachedEntries` (their paths, order and parents checked here). */
export function treeOfCached(cached: CachedEntries, manifest: Digest): Tree {
  try {
    return Tree.fromSorted(cached.entries);
  } catch (err) {
    throw new RootstockError("STORE_CORRUPT", `image tree cache ${manifest}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * The cached entries of the image with manifest `manifest`, or undefined when none
 * are kept. Rows are checked field by field; paths, their order and their parents
 * only by whoever uses them (`Tree.fromSorted`, or the checkout writing them).
 */
export async function readCachedEntries(
  store: ContentStore,
  manifest: Digest,
): Promise<CachedEntries | undefined> {
  const doc = await store.getMeta<CacheDocument>(manifest);
  const data = doc?.data;
  if (!data || data.kind !== KIND || data.version !== VERSION) return undefined;
  const what = `image tree cache ${manifest}`;
  if (
    !isDigest(data.treeDigest) ||
    !data.rows ||
    !isDigest(data.rows.digest) ||
    !isInventory(data.inventory)
  ) {
    throw new RootstockError("STORE_CORRUPT", `${what}: malformed document`);
  }
  const z = await store.readBlob(data.rows, 1 << 30);
  let rows: unknown;
  try {
    rows = JSON.parse(utf8.decode(zstdDecompress(z, what)));
  } catch (err) {
    throw new RootstockError("STORE_CORRUPT", `${what}: ${(err as Error).message}`, { cause: err });
  }
  if (!Array.isArray(rows)) throw new RootstockError("STORE_CORRUPT", `${what}: rows are not a list`);
  const entries: Array<[string, TreeNode]> = new Array(rows.length);
  const keys = new Map<TreeNode, string>();
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as Row;
    const same = row?.[13];
    if (Number.isSafeInteger(same) && same >= 0) {
      // A hard link: the very node of an earlier row (of the same type, not a directory).
      const earlier = same < i ? entries[same] : undefined;
      if (!earlier || earlier[1].type === "dir" || typeof row[0] !== "string") {
        throw new RootstockError("STORE_CORRUPT", `${what}: row ${i}: bad hard link`);
      }
      entries[i] = [row[0], earlier[1]];
    } else {
      const node = nodeOf(row, i, what);
      const key = row[14];
      if (farmHolds(node) !== (key !== "") || (key !== "" && !HEX64.test(key))) {
        throw new RootstockError("STORE_CORRUPT", `${what}: row ${i}: bad farm key`);
      }
      if (key !== "") keys.set(node, key);
      entries[i] = [row[0], node];
    }
  }
  return { entries, treeDigest: data.treeDigest, inventory: data.inventory, farmKeys: keys };
}

function isInventory(v: unknown): v is TreeInventory {
  if (typeof v !== "object" || v === null) return false;
  const fields: Array<keyof TreeInventory> = [
    "files",
    "dirs",
    "symlinks",
    "hardlinks",
    "devices",
    "fifos",
    "contentBytes",
    "uniqueContents",
    "uniqueContentBytes",
  ];
  return fields.every((f) => isCount((v as Record<string, unknown>)[f]));
}

/**
 * Keeps `tree` (with its tree digest) as the merged tree of manifest `manifest`. Call
 * it only when every layer of the image has a record in the store: the cache is read
 * instead of those records, and relies on them for the file objects.
 */
export async function writeCachedTree(
  store: ContentStore,
  manifest: Digest,
  tree: Tree,
  treeDigest: Digest,
): Promise<void> {
  await store.withLease(async () => {
    const rows = await store.putBlob(zstdCompress(Buffer.from(JSON.stringify(rowsOf(tree))), 3));
    const data: CacheDocument = {
      kind: KIND,
      version: VERSION,
      treeDigest,
      inventory: summariseTree(tree),
      rows,
    };
    await store.putMeta<CacheDocument>(manifest, { blobs: [rows.digest], data });
  });
}
