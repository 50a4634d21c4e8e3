/** Public surface of the tree module (see README.md). */

export { isContentXattr, TREE_DIGEST_VERSION, treeDigest } from "./digest.js";
export {
  applyLayers,
  type DiffOptions,
  diff,
  LayerApplier,
  type LayerEntry,
  layerEntryName,
  OPAQUE_MARKER,
  sameNode,
  sortLayerEntries,
  treeAsLayer,
  WHITEOUT_PREFIX,
} from "./layer.js";
export { compareBytes, normalisePath } from "./path.js";
export { hashTree, type ScanOptions, type ScanReport, scan } from "./scan.js";
export {
  type ContentSource,
  directoryContent,
  fromTar,
  type LayerWriteOptions,
  layerEntriesFromTar,
  layerTarEntries,
  type TarEntryLike,
  treeDigestOfTar,
  writeLayer,
} from "./tar.js";
export { impliedDir, type NodeType, Tree, type TreeNode, type Xattr } from "./tree.js";
