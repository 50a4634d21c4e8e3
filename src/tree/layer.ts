/**
 * Layers as data, with OCI image-spec semantics: applying a layer to a tree
 * (whiteouts, opaque directories, replacement, hard links, implied parents) and
 * computing the minimal layer that turns one tree into another.
 */
import { RootstockError } from "../errors.js";
import { compareBytes, joinPath, parentPath } from "./path.js";
import { impliedDir, Tree, type TreeNode } from "./tree.js";

/**
 * One change in a layer. Paths are tree paths (normalised, no `.wh.` prefixes: the
 * tar codec adds and strips those).
 */
export type LayerEntry =
  /** Add or replace `path` with `node`. */
  | { kind: "node"; path: string; node: TreeNode }
  /** Make `path` another name of the node at `target` (which must already exist). */
  | { kind: "hardlink"; path: string; target: string }
  /** Delete `path` (and everything below it) from the lower layers: `.wh.NAME`. */
  | { kind: "whiteout"; path: string }
  /** Hide everything the lower layers have below directory `path`: `.wh..wh..opq`. */
  | { kind: "opaque"; path: string };

export const WHITEOUT_PREFIX = ".wh.";
export const OPAQUE_MARKER = ".wh..wh..opq";

/** The tar name an entry is written under (whiteouts and opaque markers get their `.wh.` names). */
export function layerEntryName(entry: LayerEntry): string {
  switch (entry.kind) {
    case "whiteout":
      return joinPath(
        parentPath(entry.path),
        `${WHITEOUT_PREFIX}${entry.path.slice(entry.path.lastIndexOf("/") + 1)}`,
      );
    case "opaque":
      return joinPath(entry.path, OPAQUE_MARKER);
    default:
      return entry.path;
  }
}

/**
 * Applies one layer's entries, in archive order, to a tree it mutates. Whiteouts and
 * opaque markers only ever hide what lower layers put there (image-spec: "files that
 * are present in the same layer as a whiteout file can only be hidden by whiteout
 * files in subsequent layers"), whatever their position in the layer: the applier
 * remembers what this layer added.
 */
export class LayerApplier {
  /** Paths this layer put in place, and their ancestors. */
  readonly #touched = new Set<string>();

  constructor(readonly tree: Tree) {}

  add(entry: LayerEntry): void {
    const { tree } = this;
    switch (entry.kind) {
      case "whiteout":
        if (!this.#touched.has(entry.path)) tree.delete(entry.path);
        return;
      case "opaque": {
        const dir = tree.get(entry.path);
        if (dir?.type === "dir") this.#hideLower(entry.path);
        return;
      }
      case "hardlink": {
        const target = tree.get(entry.target);
        if (!target) {
          throw new RootstockError(
            "TAR_FORMAT",
            `${JSON.stringify(entry.path)}: hard link to ${JSON.stringify(entry.target)}, which does not exist`,
          );
        }
        if (target.type === "dir") {
          throw new RootstockError(
            "TAR_FORMAT",
            `${JSON.stringify(entry.path)}: hard link to directory ${JSON.stringify(entry.target)}`,
          );
        }
        if (entry.path !== entry.target) this.#put(entry.path, target);
        return;
      }
      case "node":
        this.#put(entry.path, entry.node);
        return;
    }
  }

  #put(path: string, node: TreeNode): void {
    if (path === "") {
      if (node.type !== "dir") throw new RootstockError("TAR_FORMAT", `the root entry must be a directory`);
      this.tree.set("", node);
      return;
    }
    this.#ensureDir(parentPath(path));
    this.tree.set(path, node);
    this.#touch(path);
  }

  #ensureDir(path: string): void {
    if (path === "") return;
    const existing = this.tree.get(path);
    if (existing?.type === "dir") return;
    this.#ensureDir(parentPath(path));
    // Missing, or a non-directory in the way: tar extraction replaces it with a directory.
    this.tree.set(path, impliedDir());
    this.#touch(path);
  }

  #touch(path: string): void {
    for (let p = path; !this.#touched.has(p); p = parentPath(p)) {
      this.#touched.add(p);
      if (p === "") break;
    }
  }

  #hideLower(dir: string): void {
    for (const child of [...this.tree.children(dir)]) {
      if (!this.#touched.has(child)) this.tree.delete(child);
      else if (this.tree.get(child)?.type === "dir") this.#hideLower(child);
    }
  }
}

/** A new tree: `base` with `layers` applied in order (base is not modified). */
export function applyLayers(base: Tree, ...layers: Iterable<LayerEntry>[]): Tree {
  const tree = base.clone();
  for (const layer of layers) {
    const applier = new LayerApplier(tree);
    for (const entry of layer) applier.add(entry);
  }
  return tree;
}

export interface DiffOptions {
  /** Compare mtimes to the nanosecond (default false: seconds, what layers and the tree digest keep). */
  mtimeNsec?: boolean;
  /** Directories whose lower children are all gone get one opaque marker instead of this many whiteouts or more (default 2). */
  opaqueThreshold?: number;
}

function sameXattrs(a: TreeNode["xattrs"], b: TreeNode["xattrs"]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const [na, va] = a[i]!;
    const [nb, vb] = b[i]!;
    if (na !== nb || Buffer.compare(va, vb) !== 0) return false;
  }
  return true;
}

/** Whether two nodes are the same inode content (everything a layer entry carries). */
export function sameNode(a: TreeNode, b: TreeNode, mtimeNsec = false): boolean {
  if (a === b) return true;
  if (a.type !== b.type || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid) return false;
  if (a.mtime.sec !== b.mtime.sec || (mtimeNsec && a.mtime.nsec !== b.mtime.nsec)) return false;
  switch (a.type) {
    case "file":
      if (!a.digest || !b.digest) {
        throw new RootstockError("INTERNAL", "diff: files must be hashed before they are compared");
      }
      if (a.size !== b.size || a.digest !== b.digest) return false;
      break;
    case "symlink":
      if (a.linkTarget !== b.linkTarget) return false;
      break;
    case "char":
    case "block":
      if (a.devmajor !== b.devmajor || a.devminor !== b.devminor) return false;
      break;
    default:
      break;
  }
  return sameXattrs(a.xattrs, b.xattrs);
}

/**
 * The minimal layer turning `lower` into `upper` (both fully hashed), deterministic:
 * - new or changed paths as full entries; a hard link group with any changed member
 *   is emitted whole: its first path (byte order) as the file, the others as hard links;
 * - a deleted path gets one whiteout at the top of what was deleted, nothing below it;
 * - a directory present in both whose lower children are all gone (none of their
 *   paths exists in upper) gets one opaque marker instead of `opaqueThreshold`+ whiteouts;
 * - a directory replaced by a non-directory is just the new entry (it replaces the subtree);
 * - entries sorted by their tar name in byte order, so parents come before children.
 * The root's own attributes are not part of a layer.
 */
export function diff(lower: Tree, upper: Tree, options: DiffOptions = {}): LayerEntry[] {
  const mtimeNsec = options.mtimeNsec ?? false;
  const opaqueThreshold = options.opaqueThreshold ?? 2;
  const upperGroups = upper.hardlinkGroups();
  const lowerGroups = lower.hardlinkGroups();
  const entries: LayerEntry[] = [];

  // Opaque directories: dir in both, and none of its lower children survive by path.
  const opaque = new Set<string>();
  for (const path of lower.sortedPaths()) {
    if (lower.get(path)!.type !== "dir" || upper.get(path)?.type !== "dir") continue;
    const kids = [...lower.children(path)];
    if (kids.length >= opaqueThreshold && kids.every((k) => !upper.has(k))) opaque.add(path);
  }

  /** Whether path's hard link partners differ (among paths still present in upper). */
  const linksChanged = (path: string, lowerNode: TreeNode, upperNode: TreeNode): boolean => {
    const up = upperGroups.get(upperNode) ?? [path];
    const low = (lowerGroups.get(lowerNode) ?? [path]).filter((p) => upper.has(p));
    return up.length !== low.length || up.some((p, i) => p !== low[i]);
  };

  const emitted = new Set<TreeNode>();
  for (const path of upper.sortedPaths()) {
    if (path === "") continue;
    const node = upper.get(path)!;
    const before = lower.get(path);
    const changed =
      !before ||
      opaque.has(path) ||
      !sameNode(before, node, mtimeNsec) ||
      (node.type !== "dir" && linksChanged(path, before, node));
    const group = node.type === "dir" ? undefined : upperGroups.get(node);
    if (!changed && !(group && emitted.has(node))) continue;
    if (group) {
      if (emitted.has(node)) continue;
      emitted.add(node);
      entries.push({ kind: "node", path: group[0]!, node });
      for (const other of group.slice(1)) entries.push({ kind: "hardlink", path: other, target: group[0]! });
    } else {
      entries.push({ kind: "node", path, node });
    }
    if (opaque.has(path)) entries.push({ kind: "opaque", path });
  }

  // Whiteouts: a lower path gone from upper whose parent is still the same directory.
  for (const path of lower.sortedPaths()) {
    if (path === "" || upper.has(path)) continue;
    const parent = parentPath(path);
    if (lower.get(parent)?.type !== "dir" || upper.get(parent)?.type !== "dir") continue;
    if (opaque.has(parent)) continue;
    entries.push({ kind: "whiteout", path });
  }

  return sortLayerEntries(entries);
}

/** Sorts entries by tar name (byte order); stable, so a group's file stays before its links. */
export function sortLayerEntries(entries: LayerEntry[]): LayerEntry[] {
  const named = entries.map((entry) => ({ entry, name: layerEntryName(entry) }));
  named.sort((a, b) => compareBytes(a.name, b.name));
  return named.map((n) => n.entry);
}

/** Every entry of `tree` as one layer (a full root filesystem), sorted, root excluded. */
export function treeAsLayer(tree: Tree): LayerEntry[] {
  return diff(new Tree(), tree);
}
