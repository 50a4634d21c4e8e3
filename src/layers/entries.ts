/**
 * A layer record's entries as tree layer entries (what export and tree digests
 * consume): the same mapping `layerEntriesFromTar` applies to tar headers, applied
 * to TOC-form entries, so a pulled layer and its tar give the same tree.
 */
import type { TocEntry } from "../compress/toc.js";
import { RootstockError } from "../errors.js";
import { EMPTY_SHA256 } from "../oci/digest.js";
import type { LayerEntry } from "../tree/layer.js";
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from "../tree/layer.js";
import { baseName, joinPath, normalisePath, parentPath } from "../tree/path.js";
import { sortXattrs, type TreeNode, type Xattr } from "../tree/tree.js";
import type { LayerRecord } from "./record.js";

const NODE_TYPES: Partial<Record<TocEntry["type"], TreeNode["type"]>> = {
  reg: "file",
  dir: "dir",
  symlink: "symlink",
  char: "char",
  block: "block",
  fifo: "fifo",
};

/** One TOC-form entry as a layer entry (whiteout names become whiteout/opaque entries). */
export function layerEntryOf(e: TocEntry): LayerEntry {
  const path = normalisePath(e.name);
  const base = baseName(path);
  if (base.startsWith(WHITEOUT_PREFIX)) {
    if (base === OPAQUE_MARKER) return { kind: "opaque", path: parentPath(path) };
    if (base.length > WHITEOUT_PREFIX.length)
      return { kind: "whiteout", path: joinPath(parentPath(path), base.slice(WHITEOUT_PREFIX.length)) };
    throw new RootstockError("TAR_FORMAT", `layer entry ${JSON.stringify(e.name)}: whiteout names nothing`);
  }
  if (e.type === "hardlink") {
    return {
      kind: "hardlink",
      path,
      target: normalisePath(e.linkName ?? "", `${e.name} -> ${e.linkName ?? ""}`),
    };
  }
  const type = NODE_TYPES[e.type];
  if (!type)
    throw new RootstockError("TAR_UNSUPPORTED", `layer entry ${JSON.stringify(e.name)}: type ${e.type}`);
  const xattrs: Xattr[] = Object.entries(e.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64")]);
  const node: TreeNode = {
    type,
    mode: (e.mode ?? 0) & 0o7777,
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    mtime: e.modtime ? { sec: e.modtime.sec, nsec: e.modtime.nsec } : { sec: 0, nsec: 0 },
    size: type === "file" ? (e.size ?? 0) : 0,
    devmajor: type === "char" || type === "block" ? (e.devMajor ?? 0) : 0,
    devminor: type === "char" || type === "block" ? (e.devMinor ?? 0) : 0,
    xattrs: sortXattrs(xattrs),
  };
  if (type === "symlink") node.linkTarget = e.linkName ?? "";
  if (type === "file") node.digest = e.digest ?? EMPTY_SHA256;
  return { kind: "node", path, node };
}

/** The record's entries, in tar order, as layer entries. */
export function layerEntries(record: LayerRecord): LayerEntry[] {
  return record.entries.map(layerEntryOf);
}
