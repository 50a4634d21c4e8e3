/**
 * Layer entries from entries in TOC form (a zstd:chunked TOC, or a LayerRecord's
 * entries): the tree module's vocabulary without reading a byte of file content,
 * since every regular file already carries its sha256.
 */
import type { TocEntry } from "../compress/toc.js";
import { RootstockError } from "../errors.js";
import { EMPTY_SHA256 } from "../oci/digest.js";
import {
  compareBytes,
  type LayerEntry,
  normalisePath,
  OPAQUE_MARKER,
  type TreeNode,
  WHITEOUT_PREFIX,
} from "../tree/index.js";

const NODE_TYPES: Partial<Record<TocEntry["type"], TreeNode["type"]>> = {
  reg: "file",
  dir: "dir",
  symlink: "symlink",
  char: "char",
  block: "block",
  fifo: "fifo",
};

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/**
 * One layer entry per TOC entry, in order (`chunk` continuation entries skipped).
 * `what` names the layer in errors. A regular file with content must carry a digest
 * (CHUNKED_FORMAT otherwise): the tree digest and the content lookup need it.
 */
export function layerEntriesFromToc(entries: readonly TocEntry[], what: string): LayerEntry[] {
  const out: LayerEntry[] = [];
  for (const e of entries) {
    if (e.type === "chunk") continue;
    const path = normalisePath(e.name, `${what}: ${e.name}`);
    const base = path.slice(path.lastIndexOf("/") + 1);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_MARKER) out.push({ kind: "opaque", path: parentOf(path) });
      else if (base.length > WHITEOUT_PREFIX.length) {
        const dir = parentOf(path);
        const name = base.slice(WHITEOUT_PREFIX.length);
        out.push({ kind: "whiteout", path: dir === "" ? name : `${dir}/${name}` });
      } else {
        throw new RootstockError(
          "CHUNKED_FORMAT",
          `${what}: entry ${JSON.stringify(e.name)}: whiteout names nothing`,
        );
      }
      continue;
    }
    if (e.type === "hardlink") {
      out.push({
        kind: "hardlink",
        path,
        target: normalisePath(e.linkName ?? "", `${what}: ${e.name} -> ${e.linkName ?? ""}`),
      });
      continue;
    }
    const type = NODE_TYPES[e.type];
    if (!type) {
      throw new RootstockError("CHUNKED_FORMAT", `${what}: entry ${JSON.stringify(e.name)}: type ${e.type}`);
    }
    const size = type === "file" ? (e.size ?? 0) : 0;
    const node: TreeNode = {
      type,
      mode: (e.mode ?? 0) & 0o7777,
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.modtime ? { sec: e.modtime.sec, nsec: e.modtime.nsec } : { sec: 0, nsec: 0 },
      size,
      devmajor: type === "char" || type === "block" ? (e.devMajor ?? 0) : 0,
      devminor: type === "char" || type === "block" ? (e.devMinor ?? 0) : 0,
      xattrs: e.xattrs
        ? Object.entries(e.xattrs)
            .map(([name, b64]) => [name, Buffer.from(b64, "base64")] as [string, Uint8Array])
            .sort((a, b) => compareBytes(a[0], b[0]))
        : [],
    };
    if (type === "symlink") node.linkTarget = e.linkName ?? "";
    if (type === "file") {
      if (size === 0) node.digest = EMPTY_SHA256;
      else if (e.digest) node.digest = e.digest;
      else {
        throw new RootstockError("CHUNKED_FORMAT", `${what}: file ${JSON.stringify(e.name)} has no digest`);
      }
    }
    out.push({ kind: "node", path, node });
  }
  return out;
}
