/** How many of each kind a root filesystem holds, for summaries and reports. */
import type { Tree } from "../tree/index.js";

export interface TreeInventory {
  files: number;
  dirs: number;
  symlinks: number;
  /** Extra names of files that have several (tar hard links). */
  hardlinks: number;
  devices: number;
  fifos: number;
  /** Sum of regular file sizes, each inode counted once. */
  contentBytes: number;
  /** Distinct file contents (what a file-deduplicating store holds). */
  uniqueContents: number;
  uniqueContentBytes: number;
}

export function summariseTree(tree: Tree): TreeInventory {
  const inv: TreeInventory = {
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    devices: 0,
    fifos: 0,
    contentBytes: 0,
    uniqueContents: 0,
    uniqueContentBytes: 0,
  };
  const seenNodes = new Set<object>();
  const seenContent = new Set<string>();
  for (const [path, node] of tree.entries()) {
    if (path === "") continue;
    switch (node.type) {
      case "file":
        if (seenNodes.has(node)) {
          inv.hardlinks++;
          break;
        }
        seenNodes.add(node);
        inv.files++;
        inv.contentBytes += node.size;
        if (node.digest && !seenContent.has(node.digest)) {
          seenContent.add(node.digest);
          inv.uniqueContents++;
          inv.uniqueContentBytes += node.size;
        }
        break;
      case "dir":
        inv.dirs++;
        break;
      case "symlink":
        inv.symlinks++;
        break;
      case "char":
      case "block":
        inv.devices++;
        break;
      case "fifo":
        inv.fifos++;
        break;
    }
  }
  return inv;
}
