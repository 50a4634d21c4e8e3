/**
 * The edge between trees and tar streams: reading a tar (a rootfs archive or an OCI
 * layer) into layer entries or a Tree, hashing file contents as they stream by, and
 * writing layer entries as a reproducible layer tar.
 */
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { RootstockError } from "../errors.js";
import { type Digest, Digester, EMPTY_SHA256 } from "../oci/digest.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { type TarNewEntry, typeflagForType, writeTar } from "../tar/index.js";
import type { TarEntryType, TarHeader } from "../tar/types.js";
import { treeDigest } from "./digest.js";
import { LayerApplier, type LayerEntry, layerEntryName, OPAQUE_MARKER, WHITEOUT_PREFIX } from "./layer.js";
import { baseName, joinPath, normalisePath, parentPath } from "./path.js";
import { sortXattrs, Tree, type TreeNode } from "./tree.js";

/** What fromTar needs of a tar entry (src/tar's TarEntry fits). */
export interface TarEntryLike {
  header: TarHeader;
  payload: AsyncIterable<Uint8Array>;
}

const NODE_TYPES: Partial<Record<TarEntryType, TreeNode["type"]>> = {
  file: "file",
  dir: "dir",
  symlink: "symlink",
  char: "char",
  block: "block",
  fifo: "fifo",
};

function checkUtf8(header: TarHeader): void {
  if (header.nameRaw || header.linknameRaw) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `tar entry ${JSON.stringify(header.name)}: name or link target is not valid UTF-8`,
    );
  }
}

/**
 * Layer entries from tar entries, in archive order. File contents are hashed as they
 * stream (never held); `.wh.` names become whiteout and opaque entries.
 */
export async function* layerEntriesFromTar(entries: AsyncIterable<TarEntryLike>): AsyncGenerator<LayerEntry> {
  for await (const { header, payload } of entries) {
    checkUtf8(header);
    const path = normalisePath(header.name);
    const base = baseName(path);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_MARKER) {
        yield { kind: "opaque", path: parentPath(path) };
      } else if (base.length > WHITEOUT_PREFIX.length) {
        yield { kind: "whiteout", path: joinPath(parentPath(path), base.slice(WHITEOUT_PREFIX.length)) };
      } else {
        throw new RootstockError(
          "TAR_FORMAT",
          `tar entry ${JSON.stringify(header.name)}: whiteout names nothing`,
        );
      }
      continue;
    }
    if (header.type === "hardlink") {
      yield {
        kind: "hardlink",
        path,
        target: normalisePath(header.linkname, `${header.name} -> ${header.linkname}`),
      };
      continue;
    }
    const type = NODE_TYPES[header.type];
    if (!type)
      throw new RootstockError(
        "TAR_UNSUPPORTED",
        `tar entry ${JSON.stringify(header.name)}: type ${header.type}`,
      );
    const node: TreeNode = {
      type,
      mode: header.mode & 0o7777,
      uid: header.uid,
      gid: header.gid,
      mtime: { sec: header.mtime.sec, nsec: header.mtime.nsec },
      size: type === "file" ? header.size : 0,
      devmajor: type === "char" || type === "block" ? header.devmajor : 0,
      devminor: type === "char" || type === "block" ? header.devminor : 0,
      xattrs: sortXattrs(header.xattrs.map(([name, value]) => [name, value])),
    };
    if (type === "symlink") node.linkTarget = header.linkname;
    if (type === "file") {
      const digester = new Digester();
      for await (const chunk of payload) digester.update(chunk);
      if (digester.size !== header.size) {
        throw new RootstockError(
          "SIZE_MISMATCH",
          `tar entry ${JSON.stringify(header.name)}: ${digester.size} payload bytes, header says ${header.size}`,
        );
      }
      node.digest = digester.digest();
    }
    yield { kind: "node", path, node };
  }
}

/**
 * The tree a tar archive holds (a root filesystem, or one layer applied to nothing),
 * with every file hashed while streaming. A "./" entry gives the root its attributes.
 */
export async function fromTar(
  entries: AsyncIterable<TarEntryLike>,
  options: { base?: Tree; progress?: ProgressSink } = {},
): Promise<Tree> {
  const progress = options.progress ?? silentProgress;
  const tree = options.base ? options.base.clone() : new Tree();
  const applier = new LayerApplier(tree);
  progress({ type: "start", id: "tree-from-tar", label: "read tar", unit: "items" });
  let count = 0;
  for await (const entry of layerEntriesFromTar(entries)) {
    applier.add(entry);
    if (++count % 1024 === 0) progress({ type: "advance", id: "tree-from-tar", current: count });
  }
  progress({ type: "done", id: "tree-from-tar", summary: `${count} entries` });
  return tree;
}

/**
 * The tree digest of a tar stream (rootfs archive or single layer), streaming: file
 * contents are hashed as they pass and only metadata is kept.
 */
export async function treeDigestOfTar(
  entries: AsyncIterable<TarEntryLike>,
  options: { progress?: ProgressSink } = {},
): Promise<Digest> {
  return treeDigest(await fromTar(entries, options));
}

/** Reads a file's content for the layer writer. */
export type ContentSource = (path: string, node: TreeNode) => AsyncIterable<Uint8Array>;

/**
 * Content from a directory on disk (what scan() read): opened without following
 * symlinks and checked against the node's digest at its end, so a file changed since
 * the scan fails the layer instead of slipping into it. A node scanned without
 * hashing gets its digest here: a whole-tree layer (`rootstock import`) then reads
 * each file once, `scan({hash: false})` → `writeLayer` → `treeDigest`.
 */
export function directoryContent(root: string): ContentSource {
  const rootAbs = root.replace(/\/+$/, "") || "/";
  const flags = constants.O_RDONLY | constants.O_NOFOLLOW;
  return async function* (path, node) {
    const abs = rootAbs === "/" ? `/${path}` : `${rootAbs}/${path}`;
    const digester = new Digester();
    if (node.size <= SMALL_FILE) {
      // One synchronous read: four thread-pool round trips per small file cost more
      // than the read itself (see hash.ts), and most of a rootfs is small files.
      const fd = openSync(abs, flags);
      let bytes: Buffer;
      try {
        bytes = readFileSync(fd);
      } finally {
        closeSync(fd);
      }
      digester.update(bytes);
      yield bytes;
    } else {
      const handle = await open(abs, flags);
      try {
        for (;;) {
          const buffer = Buffer.allocUnsafe(1 << 20);
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
          if (bytesRead === 0) break;
          const chunk = buffer.subarray(0, bytesRead);
          digester.update(chunk);
          yield chunk;
        }
      } finally {
        await handle.close();
      }
    }
    if (digester.size !== node.size) {
      throw new RootstockError("SIZE_MISMATCH", `${abs}: content changed since it was scanned`);
    }
    const digest = digester.digest();
    if (node.digest === undefined) node.digest = digest;
    else if (digest !== node.digest) {
      throw new RootstockError("DIGEST_MISMATCH", `${abs}: content changed since it was scanned`);
    }
  };
}

const SMALL_FILE = 256 * 1024;

export interface LayerWriteOptions {
  /** SOURCE_DATE_EPOCH: every mtime later than this is clamped to it. */
  sourceDateEpoch?: number;
  progress?: ProgressSink;
}

function clampTime(sec: number, epoch: number | undefined): { sec: number; nsec: number } {
  // Whole seconds only: sub-second times cost a PAX header per entry and ustar/cpio forms lose them anyway.
  return { sec: epoch === undefined ? sec : Math.min(sec, epoch), nsec: 0 };
}

function headerFor(
  entry: LayerEntry,
  tree: (path: string) => TreeNode | undefined,
  epoch?: number,
): TarHeader {
  const base: TarHeader = {
    name: layerEntryName(entry),
    linkname: "",
    type: "file",
    typeflag: typeflagForType("file"),
    mode: 0,
    uid: 0,
    gid: 0,
    uname: "",
    gname: "",
    size: 0,
    mtime: { sec: 0, nsec: 0 },
    devmajor: 0,
    devminor: 0,
    xattrs: [],
  };
  let node: TreeNode | undefined;
  if (entry.kind === "node") node = entry.node;
  else if (entry.kind === "hardlink") node = tree(entry.target);
  if (entry.kind === "whiteout" || entry.kind === "opaque" || !node) return base;
  const type: TarEntryType = entry.kind === "hardlink" ? "hardlink" : node.type;
  return {
    ...base,
    name: node.type === "dir" ? `${entry.path}/` : entry.path,
    linkname: entry.kind === "hardlink" ? entry.target : (node.linkTarget ?? ""),
    type,
    typeflag: typeflagForType(type),
    mode: node.mode,
    uid: node.uid,
    gid: node.gid,
    size: type === "file" ? node.size : 0,
    mtime: clampTime(node.mtime.sec, epoch),
    devmajor: node.devmajor,
    devminor: node.devminor,
    // Not the host's SELinux label; not empty values (Go's tar readers drop them).
    xattrs: node.xattrs.filter(([name, value]) => name !== "security.selinux" && value.length > 0),
  };
}

/**
 * A reproducible layer tar from layer entries (diff() output, already sorted):
 * canonical headers (src/tar), numeric ownership without names, whole-second mtimes
 * clamped to SOURCE_DATE_EPOCH, no atime/ctime, xattrs as SCHILY.xattr (without
 * security.selinux, the host's label). Same entries and contents → same bytes.
 */
export async function* writeLayer(
  entries: readonly LayerEntry[],
  content: ContentSource,
  options: LayerWriteOptions = {},
): AsyncGenerator<Uint8Array> {
  yield* writeTar(layerTarEntries(entries, content, options));
}

/**
 * The same layer as tar entries (header + payload), for writers that need each
 * entry as it goes by (the zstd:chunked writer builds its TOC from them).
 */
export async function* layerTarEntries(
  entries: readonly LayerEntry[],
  content: ContentSource,
  options: LayerWriteOptions = {},
): AsyncGenerator<TarNewEntry & { entry: LayerEntry }> {
  const progress = options.progress ?? silentProgress;
  // Hard links may only name a file written earlier in the same layer.
  const written = new Map<string, TreeNode>();
  const total = entries.length;
  progress({ type: "start", id: "tree-write-layer", label: "write layer", total, unit: "items" });
  let done = 0;
  for (const entry of entries) {
    if (entry.kind === "hardlink" && !written.has(entry.target)) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `layer entry ${JSON.stringify(entry.path)}: hard link target ${JSON.stringify(entry.target)} is not earlier in the layer`,
      );
    }
    if (entry.kind === "node") written.set(entry.path, entry.node);
    // An empty file is never read: its digest is known.
    if (entry.kind === "node" && entry.node.type === "file" && entry.node.size === 0)
      entry.node.digest ??= EMPTY_SHA256;
    const header = headerFor(entry, (p) => written.get(p), options.sourceDateEpoch);
    const payload =
      header.type === "file" && header.size > 0 && entry.kind === "node"
        ? content(entry.path, entry.node)
        : undefined;
    yield { header, payload, entry };
    if (++done % 1024 === 0) progress({ type: "advance", id: "tree-write-layer", current: done, total });
  }
  progress({ type: "done", id: "tree-write-layer", summary: `${total} entries` });
}
