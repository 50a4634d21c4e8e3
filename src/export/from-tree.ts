/**
 * The seam to the tree module: a merged Tree (whiteouts and opaque directories
 * already applied) becomes the export entry list every format writes. File
 * contents come from a callback, normally the cas file object of the node's digest.
 */
import type { Tree, TreeNode } from "../tree/index.js";
import type { ContentSource, ExportEntry } from "./entry.js";

/** Where a file node's bytes are: a cas object path, a stream... */
export type ContentLookup = (path: string, node: TreeNode) => ContentSource;

/**
 * Entries in byte order of paths (parents first). A hard link group of regular
 * files is its first path as a "file" and the others as "hardlink" entries naming
 * it. Non-file nodes reached by several paths (hardlinked symlinks or devices, which
 * tar allows) are written as independent copies: the formats and the safe writer
 * link regular files only.
 */
export function entriesFromTree(tree: Tree, content: ContentLookup): ExportEntry[] {
  const firstPath = new Map<TreeNode, string>();
  for (const [node, paths] of tree.hardlinkGroups()) if (node.type === "file") firstPath.set(node, paths[0]!);
  const entries: ExportEntry[] = [];
  for (const path of tree.sortedPaths()) {
    const node = tree.get(path)!;
    const entry: ExportEntry = {
      path: path === "" ? "." : path,
      type: node.type,
      mode: node.mode,
      uid: node.uid,
      gid: node.gid,
      mtime: node.mtime,
      size: node.size,
      devmajor: node.devmajor,
      devminor: node.devminor,
      xattrs: node.xattrs,
    };
    const first = firstPath.get(node);
    if (first !== undefined && first !== path) {
      entry.type = "hardlink";
      entry.linkTarget = first;
      entry.size = 0;
    } else if (node.type === "symlink") {
      entry.linkTarget = node.linkTarget ?? "";
    } else if (node.type === "file" && node.size > 0) {
      entry.content = content(path, node);
    }
    entries.push(entry);
  }
  return entries;
}
