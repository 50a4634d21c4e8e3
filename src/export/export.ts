/**
 * `rootstock export`: an image (plus overlays) as the form a farm boots. One merged
 * tree (image-rootfs.ts + overlay.ts), then one writer per format:
 *
 *   dir       safe-dir.ts; files hardlinked from the farm (farm.ts) or copied (`copy`)
 *   tar       canonical reproducible tar (the tree module's layer writer, sorted,
 *             whole-second mtimes, numeric owners, no atime/ctime, SCHILY xattrs)
 *   tar.zst   the same bytes through one zstd stream
 *   cpio      newc (cpio.ts), cpio.zst likewise
 *
 * Archives go to a file (written as PATH.rootstock-partial, renamed when complete:
 * never half-written under its name) or to a stream (stdout). The result carries
 * the tree digest of what was exported (overlays included): `rootstock digest` of
 * the output gives the same value.
 */
import { closeSync, constants, createWriteStream, openSync, readFileSync, readSync } from "node:fs";
import { lstat, rename, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ContentStore } from "../cas/store.js";
import { encodeLayer } from "../compress/layer.js";
import { RootstockError } from "../errors.js";
import type { Endpoint } from "../image/endpoint.js";
import { summariseTree, type TreeInventory } from "../image/inventory.js";
import type { Digest } from "../oci/digest.js";
import type { Platform } from "../oci/platform.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { coalesceChunks } from "../tar/index.js";
import {
  LayerApplier,
  type Tree,
  type TreeNode,
  treeAsLayer,
  treeDigest,
  writeLayer,
} from "../tree/index.js";
import { writeCpio } from "./cpio.js";
import type { ExportEntry } from "./entry.js";
import { type FarmStats, LinkFarm } from "./farm.js";
import { entriesFromTree } from "./from-tree.js";
import { type ImageRootfs, type LayerSourceKind, loadImageRootfs } from "./image-rootfs.js";
import { type OverlaySpec, overlayEntries } from "./overlay.js";
import { type SafeDirResult, writeDirectory } from "./safe-dir.js";

export const EXPORT_FORMATS = ["dir", "tar", "tar.zst", "cpio", "cpio.zst"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const PARTIAL_FILE_SUFFIX = ".rootstock-partial";

export interface ExportOptions {
  format: ExportFormat;
  /** A path, or a writable stream (stdout) for archive formats. */
  output: string | NodeJS.WritableStream;
  overlays?: OverlaySpec[];
  /** Replace an existing file, write into a non-empty directory. */
  force?: boolean;
  /** dir: copy (reflink where possible) instead of hardlinking from the farm. */
  copy?: boolean;
  platform?: Platform;
  /** dir: flush the filesystem before declaring the export complete (default true). */
  durable?: boolean;
  /** tar.zst / cpio.zst level (default 3). */
  zstdLevel?: number;
  progress?: ProgressSink;
}

export interface ExportResult {
  format: ExportFormat;
  output: string;
  image: Digest;
  treeDigest: Digest;
  inventory: TreeInventory;
  layers: Array<{ digest: Digest; via: LayerSourceKind }>;
  overlays: number;
  /** Archive formats: bytes written. */
  bytes?: number;
  /** File objects the export had to unpack from layer blobs first. */
  unpacked: number;
  dir?: SafeDirResult & { farm: FarmStats };
}

/** Image + overlays as one tree whose file nodes all have contents in the store (when `content`). */
export async function exportTree(
  source: Endpoint,
  store: ContentStore,
  opts: {
    overlays?: OverlaySpec[];
    platform?: Platform;
    progress?: ProgressSink;
    storeBlobContent?: boolean;
  },
): Promise<{ rootfs: ImageRootfs; tree: Tree }> {
  const rootfs = await loadImageRootfs(source, store, {
    ...(opts.platform ? { platform: opts.platform } : {}),
    storeBlobContent: opts.storeBlobContent ?? true,
    ...(opts.progress ? { progress: opts.progress } : {}),
  });
  const tree = rootfs.tree;
  for (const spec of opts.overlays ?? []) {
    const applier = new LayerApplier(tree);
    for (const entry of await overlayEntries(spec, store)) applier.add(entry);
  }
  return { rootfs, tree };
}

function fileNodes(tree: Tree): Set<TreeNode> {
  const nodes = new Set<TreeNode>();
  for (const [, node] of tree.entries()) if (node.type === "file" && node.size > 0) nodes.add(node);
  return nodes;
}

/** Content of a file object for the tar writer: small files in one synchronous read. */
function fileObjectContent(store: ContentStore) {
  return (_path: string, node: TreeNode): AsyncIterable<Uint8Array> =>
    readObject(store.filePath(node.digest!), node.size);
}

const SMALL = 1 << 20;

async function* readObject(path: string, size: number): AsyncGenerator<Uint8Array> {
  if (size <= SMALL) {
    yield readFileSync(path);
    return;
  }
  const fd = openSync(path, constants.O_RDONLY);
  try {
    for (let done = 0; done < size; ) {
      const buf = Buffer.allocUnsafe(Math.min(4 << 20, size - done));
      const n = readSync(fd, buf, 0, buf.length, done);
      if (n === 0) break;
      done += n;
      yield n === buf.length ? buf : buf.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** The archive bytes of a tree in an archive format. */
export function archiveStream(
  tree: Tree,
  store: ContentStore,
  format: Exclude<ExportFormat, "dir">,
  opts: { zstdLevel?: number; progress?: ProgressSink } = {},
): AsyncIterable<Uint8Array> {
  let raw: AsyncIterable<Uint8Array>;
  if (format === "tar" || format === "tar.zst") {
    raw = coalesceChunks(
      writeLayer(treeAsLayer(tree), fileObjectContent(store), { progress: opts.progress ?? silentProgress }),
    );
  } else {
    const entries = entriesFromTree(tree, (_p, node) => ({
      kind: "path",
      path: store.filePath(node.digest!),
    }));
    raw = writeCpio(entries, opts.progress ? { progress: opts.progress } : {});
  }
  if (!format.endsWith(".zst")) return raw;
  return encodeLayer(raw, { compression: "zstd", level: opts.zstdLevel ?? 3 }).blob;
}

async function* counting(
  source: AsyncIterable<Uint8Array>,
  count: { bytes: number },
): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    count.bytes += chunk.length;
    yield chunk;
  }
}

/** Writes an archive to a path atomically (partial file renamed at the end) or to a stream. */
async function writeArchive(
  stream: AsyncIterable<Uint8Array>,
  output: string | NodeJS.WritableStream,
  force: boolean,
): Promise<{ output: string; bytes: number }> {
  const count = { bytes: 0 };
  if (typeof output !== "string") {
    await pipeline(Readable.from(counting(stream, count)), output, { end: false });
    return { output: "-", bytes: count.bytes };
  }
  const target = resolve(output);
  const existing = await lstat(target).catch(() => undefined);
  if (existing) {
    if (existing.isDirectory()) throw new RootstockError("ALREADY_EXISTS", `${target} is a directory`);
    if (!force) throw new RootstockError("ALREADY_EXISTS", `${target} exists (use --force to replace it)`);
  }
  const partial = target + PARTIAL_FILE_SUFFIX;
  await rm(partial, { force: true });
  try {
    await pipeline(
      Readable.from(counting(stream, count)),
      createWriteStream(partial, { flags: "wx", mode: 0o644 }),
    );
    await rename(partial, target);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
  return { output: target, bytes: count.bytes };
}

/** Dir export entries: farm objects (hardlink mode) or file objects (copy mode). */
async function dirEntries(
  tree: Tree,
  rootfs: ImageRootfs,
  store: ContentStore,
  copy: boolean,
  progress: ProgressSink,
): Promise<{ entries: ExportEntry[]; farm: FarmStats; unpacked: number }> {
  const nodes = fileNodes(tree);
  if (copy) {
    const unpacked = await rootfs.ensureContent([...nodes].map((n) => n.digest!));
    const entries = entriesFromTree(tree, (_p, node) => ({
      kind: "path",
      path: store.filePath(node.digest!),
    }));
    return { entries, farm: { reused: 0, made: 0 }, unpacked };
  }
  const farm = new LinkFarm(store.root);
  const farmPath = new Map<TreeNode, string>();
  const missing: Array<[TreeNode, string]> = [];
  const ordered = tree.sortedPaths().map((p) => tree.get(p)!);
  for (const [node, path] of farm.assign(ordered.filter((n) => nodes.has(n) && farm.canHold(n)))) {
    const found = farm.lookup(node, path);
    if (found) farmPath.set(node, found);
    else missing.push([node, path]);
  }
  let unpacked = 0;
  if (missing.length > 0) {
    // Only the contents the farm lacks are needed (and decoded, when a layer still holds them).
    unpacked = await rootfs.ensureContent(missing.map(([n]) => n.digest!));
    progress({ type: "start", id: "farm", label: "hardlink farm", total: missing.length, unit: "files" });
    for (const [node, path] of await farm.make(missing, (d) => store.filePath(d))) farmPath.set(node, path);
    progress({ type: "done", id: "farm", summary: `${farm.stats.made} objects made` });
  }
  const copyNeeded = [...nodes].filter((n) => !farmPath.has(n)).map((n) => n.digest!);
  if (copyNeeded.length > 0) unpacked += await rootfs.ensureContent(copyNeeded);
  const entries = entriesFromTree(tree, (_p, node) => {
    const path = farmPath.get(node);
    return path
      ? { kind: "path", path, prepared: true }
      : { kind: "path", path: store.filePath(node.digest!) };
  });
  return { entries, farm: farm.stats, unpacked };
}

export async function exportImage(
  source: Endpoint,
  store: ContentStore,
  opts: ExportOptions,
): Promise<ExportResult> {
  const progress = opts.progress ?? silentProgress;
  if (opts.format === "dir" && typeof opts.output !== "string") {
    throw new RootstockError("INVALID_ARGUMENT", "a dir export needs a directory path, not a stream");
  }
  const { rootfs, tree } = await exportTree(source, store, {
    ...(opts.overlays ? { overlays: opts.overlays } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
    progress,
  });
  const base = {
    format: opts.format,
    image: rootfs.image.descriptor.digest,
    treeDigest: treeDigest(tree),
    inventory: summariseTree(tree),
    layers: rootfs.layers.map((l) => ({ digest: l.descriptor.digest, via: l.via })),
    overlays: opts.overlays?.length ?? 0,
  };
  if (opts.format === "dir") {
    const { entries, farm, unpacked } = await dirEntries(tree, rootfs, store, opts.copy ?? false, progress);
    const dir = await writeDirectory(opts.output as string, entries, {
      content: opts.copy ? "copy" : "hardlink",
      force: opts.force ?? false,
      durable: opts.durable ?? true,
      progress,
    });
    return { ...base, output: dir.target, unpacked, dir: { ...dir, farm } };
  }
  const unpacked = await rootfs.ensureContent([...fileNodes(tree)].map((n) => n.digest!));
  const written = await writeArchive(
    archiveStream(tree, store, opts.format, {
      ...(opts.zstdLevel ? { zstdLevel: opts.zstdLevel } : {}),
      progress,
    }),
    opts.output,
    opts.force ?? false,
  );
  return { ...base, ...written, unpacked };
}
