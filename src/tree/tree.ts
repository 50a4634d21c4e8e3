/**
 * The root filesystem as data: a map from path to inode. Paths that are hard links
 * of each other map to the very same TreeNode object, exactly like directory
 * entries sharing an inode; nodes are never mutated once in a tree, so sharing is safe.
 */
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import type { TarTime } from "../tar/types.js";
import { compareBytes, isInside, normalisePath, parentPath } from "./path.js";

export type NodeType = "file" | "dir" | "symlink" | "char" | "block" | "fifo";

/** An extended attribute: name and binary value. */
export type Xattr = [name: string, value: Uint8Array];

export interface TreeNode {
  type: NodeType;
  /** Permission bits with setuid/setgid/sticky (07777), no file type bits. */
  mode: number;
  uid: number;
  gid: number;
  mtime: TarTime;
  /** Content length for files, 0 otherwise. */
  size: number;
  /** sha256 of a file's content, once hashed. */
  digest?: Digest;
  /** Symlink target, as stored (not resolved, not cleaned). */
  linkTarget?: string;
  devmajor: number;
  devminor: number;
  /** Sorted by name in byte order; names unique. */
  xattrs: Xattr[];
}

/** The attributes a directory gets when a layer only implies it (a parent of an entry). */
export function impliedDir(): TreeNode {
  return {
    type: "dir",
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime: { sec: 0, nsec: 0 },
    size: 0,
    devmajor: 0,
    devminor: 0,
    xattrs: [],
  };
}

export function sortXattrs(xattrs: Xattr[]): Xattr[] {
  return xattrs.sort((a, b) => compareBytes(a[0], b[0]));
}

export class Tree {
  readonly #nodes = new Map<string, TreeNode>();
  /** Directory path → paths of its direct children, so subtree removal is cheap. */
  readonly #children = new Map<string, Set<string>>();
  #sorted: string[] | undefined;

  constructor(root: TreeNode = impliedDir()) {
    if (root.type !== "dir") throw new RootstockError("INTERNAL", "tree root must be a directory");
    this.#nodes.set("", root);
    this.#children.set("", new Set());
  }

  /**
   * A tree from entries already in `sortedPaths` order, the root first (a tree read
   * back from a cache): one pass, no sort. Paths must be normal, strictly increasing,
   * and each parent a directory listed earlier; anything else is INVALID_FORMAT.
   */
  static fromSorted(entries: ReadonlyArray<readonly [string, TreeNode]>): Tree {
    const first = entries[0];
    if (first?.[0] !== "" || first[1].type !== "dir") {
      throw new RootstockError("INVALID_FORMAT", "a sorted tree starts with its root directory");
    }
    const tree = new Tree(first[1]);
    const paths: string[] = [""];
    for (let i = 1; i < entries.length; i++) {
      const [path, node] = entries[i]!;
      if (normalisePath(path) !== path || path === "" || compareBytes(paths[i - 1]!, path) >= 0) {
        throw new RootstockError(
          "INVALID_FORMAT",
          `${JSON.stringify(path)}: not a normal path in byte order`,
        );
      }
      const siblings = tree.#children.get(parentPath(path));
      if (!siblings) {
        throw new RootstockError(
          "INVALID_FORMAT",
          `${JSON.stringify(path)}: parent is not a directory listed earlier`,
        );
      }
      tree.#nodes.set(path, node);
      siblings.add(path);
      if (node.type === "dir") tree.#children.set(path, new Set());
      paths.push(path);
    }
    tree.#sorted = paths;
    return tree;
  }

  get size(): number {
    return this.#nodes.size;
  }

  get root(): TreeNode {
    return this.#nodes.get("")!;
  }

  get(path: string): TreeNode | undefined {
    return this.#nodes.get(path);
  }

  has(path: string): boolean {
    return this.#nodes.has(path);
  }

  /** Direct children of a directory (unsorted). */
  children(path: string): Iterable<string> {
    return this.#children.get(path) ?? [];
  }

  /**
   * Puts `node` at `path`. The parent must be a directory in the tree. A directory
   * replacing a directory keeps its children; anything else replacing a directory
   * removes the whole subtree first (what tar extraction does).
   */
  set(path: string, node: TreeNode): void {
    if (path === "") {
      if (node.type !== "dir") throw new RootstockError("INVALID_FORMAT", "the root must be a directory");
      this.#nodes.set("", node);
      return;
    }
    const parent = parentPath(path);
    const siblings = this.#children.get(parent);
    if (!siblings) {
      throw new RootstockError("INTERNAL", `${JSON.stringify(path)}: parent is not a directory in the tree`);
    }
    const old = this.#nodes.get(path);
    if (old?.type === "dir" && node.type !== "dir") this.delete(path);
    if (!old) this.#sorted = undefined;
    this.#nodes.set(path, node);
    siblings.add(path);
    if (node.type === "dir" && !this.#children.has(path)) this.#children.set(path, new Set());
  }

  /** Removes `path` and everything below it. */
  delete(path: string): void {
    if (path === "" || !this.#nodes.has(path)) return;
    const stack = [path];
    while (stack.length > 0) {
      const p = stack.pop()!;
      const kids = this.#children.get(p);
      if (kids) {
        stack.push(...kids);
        this.#children.delete(p);
      }
      this.#nodes.delete(p);
    }
    this.#children.get(parentPath(path))?.delete(path);
    this.#sorted = undefined;
  }

  /** All paths including the root "", in byte order (parents before children). Cached. */
  sortedPaths(): readonly string[] {
    if (!this.#sorted) this.#sorted = [...this.#nodes.keys()].sort(compareBytes);
    return this.#sorted;
  }

  entries(): IterableIterator<[string, TreeNode]> {
    return this.#nodes.entries();
  }

  /** Paths strictly below `dir`, in byte order. */
  descendants(dir: string): string[] {
    return this.sortedPaths().filter((p) => isInside(p, dir));
  }

  /**
   * Hard link groups: every node reached by more than one path, with its paths in
   * byte order. The first path is the one that owns the content in a layer.
   */
  hardlinkGroups(): Map<TreeNode, string[]> {
    const seen = new Map<TreeNode, string[]>();
    for (const path of this.sortedPaths()) {
      const node = this.#nodes.get(path)!;
      if (node.type === "dir") continue;
      const group = seen.get(node);
      if (group) group.push(path);
      else seen.set(node, [path]);
    }
    for (const [node, paths] of seen) if (paths.length < 2) seen.delete(node);
    return seen;
  }

  /** A copy sharing no structure with this tree, except that nodes (immutable) are reused. */
  clone(): Tree {
    const copy = new Tree(this.root);
    for (const path of this.sortedPaths()) if (path !== "") copy.set(path, this.#nodes.get(path)!);
    return copy;
  }
}
