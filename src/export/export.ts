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
import { closeSync, openSync, writeSync } from "node:fs";
import { lstat, rename, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ContentStore } from "../cas/store.js";
import { RootstockError } from "../errors.js";
import type { Endpoint } from "../image/endpoint.js";
import { summariseTree, type TreeInventory } from "../image/inventory.js";
import type { Digest } from "../oci/digest.js";
import type { Platform } from "../oci/platform.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import {
  compareBytes,
  LayerApplier,
  type LayerEntry,
  type Tree,
  type TreeNode,
  treeDigest,
} from "../tree/index.js";
import { checkoutCached } from "./checkout.js";
import type { ExportEntry } from "./entry.js";
import { type FarmStats, LinkFarm } from "./farm.js";
import { entriesFromTree } from "./from-tree.js";
import {
  type CachedRootfs,
  type ImageRootfs,
  type LayerSourceKind,
  loadImageRootfs,
  readCachedRootfs,
} from "./image-rootfs.js";
import { OverlappedWriter } from "./overlapped-writer.js";
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
  layers: Array<{ digest: Digest; via: LayerSourceKind; exploded: boolean }>;
  overlays: number;
  /** Archive formats: bytes written. */
  bytes?: number;
  /** File objects the export had to unpack from layer blobs first. */
  explodedLayers: number;
  /** The image's merged tree came from the store's cache (tree-cache.ts). */
  treeFromCache: boolean;
  /** `cachedCheckout`: written straight from the cached tree and the farm (checkout.ts). */
  dir?: SafeDirResult & { farm: FarmStats; cachedCheckout: boolean };
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
    cached?: CachedRootfs;
  },
): Promise<{ rootfs: ImageRootfs; tree: Tree }> {
  const progress = opts.progress ?? silentProgress;
  progress({ type: "start", id: "image", label: `read ${source.name}` });
  const rootfs = await loadImageRootfs(source, store, {
    ...(opts.platform ? { platform: opts.platform } : {}),
    storeBlobContent: opts.storeBlobContent ?? true,
    ...(opts.progress ? { progress: opts.progress } : {}),
    ...(opts.cached ? { cached: opts.cached } : {}),
  });
  // Overlays go on a copy: rootfs.tree stays the image's own tree (keepTree caches it).
  const tree = opts.overlays?.length ? rootfs.tree.clone() : rootfs.tree;
  for (const spec of opts.overlays ?? []) {
    const applier = new LayerApplier(tree);
    for (const entry of await overlayEntries(spec, store)) applier.add(entry);
  }
  progress({ type: "done", id: "image", summary: `${tree.size} entries` });
  return { rootfs, tree };
}

function fileNodes(tree: Tree): Set<TreeNode> {
  const nodes = new Set<TreeNode>();
  for (const [, node] of tree.entries()) if (node.type === "file" && node.size > 0) nodes.add(node);
  return nodes;
}

/**
 * Tar order: depth first, each directory's entries contiguous and sorted by name
 * bytes (what `tar -c --sort=name` and Go's filepath.Walk give). Plain byte order of
 * whole paths puts `perl-base/...` between `perl` and `perl/...`, and GNU tar, which
 * restores a directory's mtime once it leaves it, then leaves `perl` with the
 * extraction time.
 */
export function tarOrder(tree: Tree): string[] {
  const keyed = tree.sortedPaths().map((p) => [p.replaceAll("/", "\0"), p] as const);
  keyed.sort((a, b) => compareBytes(a[0], b[0]));
  return keyed.map(([, p]) => p);
}

/** The tree as one layer's entries in tar order: a hard link group's first path (in that order) owns the content. */
export function rootfsLayerEntries(tree: Tree): LayerEntry[] {
  const owner = new Map<TreeNode, string>();
  const out: LayerEntry[] = [];
  for (const path of tarOrder(tree)) {
    if (path === "") continue;
    const node = tree.get(path)!;
    const first = node.type === "file" ? owner.get(node) : undefined;
    if (first !== undefined) out.push({ kind: "hardlink", path, target: first });
    else {
      if (node.type === "file") owner.set(node, path);
      out.push({ kind: "node", path, node });
    }
  }
  return out;
}

/** The archive bytes of a tree in an archive format (each writer loaded when asked for). */
export async function* archiveStream(
  tree: Tree,
  store: ContentStore,
  format: Exclude<ExportFormat, "dir">,
  opts: { zstdLevel?: number; progress?: ProgressSink; buffers?: () => Promise<Buffer> } = {},
): AsyncGenerator<Uint8Array> {
  let raw: AsyncIterable<Uint8Array>;
  if (format === "tar" || format === "tar.zst") {
    const { rootfsTar } = await import("./tar-out.js");
    raw = rootfsTar(rootfsLayerEntries(tree), (d) => store.filePath(d), {
      // Output buffers handed back by the writer: plain tar only (zstd holds on to its input).
      ...(opts.buffers && format === "tar" ? { buffers: opts.buffers } : {}),
      ...(opts.progress ? { progress: opts.progress } : {}),
    });
  } else {
    const { writeCpio } = await import("./cpio.js");
    const entries = entriesFromTree(tree, (_p, node) => ({
      kind: "path",
      path: store.filePath(node.digest!),
    }));
    raw = writeCpio(entries, opts.progress ? { progress: opts.progress } : {});
  }
  if (!format.endsWith(".zst")) {
    yield* raw;
    return;
  }
  const { encodeLayer } = await import("../compress/layer.js");
  yield* encodeLayer(raw, { compression: "zstd", level: opts.zstdLevel ?? 3 }).blob;
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
  stream: (buffers?: () => Promise<Buffer>) => AsyncIterable<Uint8Array>,
  output: string | NodeJS.WritableStream,
  force: boolean,
  overlap: boolean,
): Promise<{ output: string; bytes: number }> {
  const count = { bytes: 0 };
  if (typeof output !== "string") {
    await pipeline(Readable.from(counting(stream(), count)), output, { end: false });
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
    const fd = openSync(partial, "wx", 0o644);
    try {
      if (overlap) await writeOverlapped(fd, stream, count);
      else await writeInTurn(fd, stream(), count);
    } finally {
      closeSync(fd);
    }
    await rename(partial, target);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
  return { output: target, bytes: count.bytes };
}

/** Synchronous writes: each chunk is written before the next is produced. */
async function writeInTurn(
  fd: number,
  stream: AsyncIterable<Uint8Array>,
  count: { bytes: number },
): Promise<void> {
  for await (const chunk of stream) {
    for (let at = 0; at < chunk.length; ) at += writeSync(fd, chunk, at, chunk.length - at);
    count.bytes += chunk.length;
  }
}

/** Writes in the thread pool while the next chunks are produced, into buffers it hands back. */
async function writeOverlapped(
  fd: number,
  stream: (buffers: () => Promise<Buffer>) => AsyncIterable<Uint8Array>,
  count: { bytes: number },
): Promise<void> {
  const writer = new OverlappedWriter(fd);
  try {
    for await (const chunk of stream(() => writer.buffer())) {
      await writer.write(chunk);
      count.bytes += chunk.length;
    }
    await writer.end();
  } finally {
    // No write may still use the descriptor when it is closed (its number gets reused).
    await writer.end().catch(() => {});
  }
}

/** Dir export entries: farm objects (hardlink mode) or file objects (copy mode). */
async function dirEntries(
  tree: Tree,
  rootfs: ImageRootfs,
  store: ContentStore,
  copy: boolean,
  progress: ProgressSink,
): Promise<{ entries: ExportEntry[]; farm: FarmStats; explodedLayers: number }> {
  const nodes = fileNodes(tree);
  if (copy) {
    const explodedLayers = await rootfs.ensureContent([...nodes].map((n) => n.digest!));
    const entries = entriesFromTree(tree, (_p, node) => ({
      kind: "path",
      path: store.filePath(node.digest!),
    }));
    return { entries, farm: { reused: 0, made: 0 }, explodedLayers };
  }
  progress({ type: "start", id: "farm-lookup", label: "hardlink farm lookup" });
  const farm = new LinkFarm(store.root);
  const farmPath = new Map<TreeNode, string>();
  const missing: Array<[TreeNode, string]> = [];
  const ordered = tree.sortedPaths().map((p) => tree.get(p)!);
  // Files with content, device nodes and fifos: whatever this process can make once and link.
  for (const [node, path] of farm.assign(ordered.filter((n) => farm.canHold(n)))) {
    const found = farm.lookup(node, path);
    if (found) farmPath.set(node, found);
    else missing.push([node, path]);
  }
  let explodedLayers = 0;
  if (missing.length > 0) {
    // Only the contents the farm lacks are needed (and decoded, when a layer still holds them).
    explodedLayers = await rootfs.ensureContent(
      missing.filter(([n]) => n.type === "file").map(([n]) => n.digest!),
    );
    progress({ type: "start", id: "farm", label: "hardlink farm", total: missing.length, unit: "items" });
    for (const [node, path] of await farm.make(missing, (d) => store.filePath(d))) farmPath.set(node, path);
    progress({ type: "done", id: "farm", summary: `${farm.stats.made} objects made` });
  }
  const copyNeeded = [...nodes].filter((n) => !farmPath.has(n)).map((n) => n.digest!);
  if (copyNeeded.length > 0) explodedLayers += await rootfs.ensureContent(copyNeeded);
  progress({ type: "done", id: "farm-lookup" });
  const entries = entriesFromTree(tree, (_p, node) => {
    const path = farmPath.get(node);
    return path
      ? { kind: "path", path, prepared: true }
      : { kind: "path", path: store.filePath(node.digest!) };
  });
  for (const entry of entries) {
    if (entry.type !== "char" && entry.type !== "block" && entry.type !== "fifo") continue;
    const path = farmPath.get(tree.get(entry.path)!);
    if (path) entry.content = { kind: "path", path, prepared: true };
  }
  return { entries, farm: farm.stats, explodedLayers };
}

/**
 * Exports an image. Holds a store lease throughout: gc (and the farm pruning it
 * does) waits, so no file object or farm object goes away under a running export.
 */
export function exportImage(
  source: Endpoint,
  store: ContentStore,
  opts: ExportOptions,
): Promise<ExportResult> {
  return store.withLease(() => exportUnderLease(source, store, opts));
}

async function exportUnderLease(
  source: Endpoint,
  store: ContentStore,
  opts: ExportOptions,
): Promise<ExportResult> {
  const progress = opts.progress ?? silentProgress;
  if (opts.format === "dir" && typeof opts.output !== "string") {
    throw new RootstockError("INVALID_ARGUMENT", "a dir export needs a directory path, not a stream");
  }
  // A hardlink dir export of an image exported before: straight from the cached tree
  // and the farm (checkout.ts). Read once: the general path takes it when declined.
  const hardlinkDir = opts.format === "dir" && !opts.copy && !opts.overlays?.length;
  const cached = hardlinkDir ? await readCachedRootfs(source, store, opts.platform) : undefined;
  if (cached) {
    const checkout = await checkoutCached(cached, store, opts.output as string, {
      ...(opts.durable !== undefined ? { durable: opts.durable } : {}),
      progress,
    });
    if (checkout) {
      const { rootfs, dir } = checkout;
      return {
        format: "dir",
        output: dir.target,
        image: rootfs.image.descriptor.digest,
        treeDigest: rootfs.treeDigest,
        inventory: rootfs.inventory,
        layers: rootfs.layers.map((l) => ({ digest: l.descriptor.digest, via: l.via, exploded: false })),
        treeFromCache: true,
        overlays: 0,
        explodedLayers: 0,
        dir: { ...dir, cachedCheckout: true },
      };
    }
  }
  const { rootfs, tree } = await exportTree(source, store, {
    ...(opts.overlays ? { overlays: opts.overlays } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
    ...(cached ? { cached } : {}),
    progress,
  });
  // Without overlays the tree is the image's: its digest may be cached, or is kept with it.
  if (tree === rootfs.tree) rootfs.treeDigest ??= treeDigest(tree);
  const digest = tree === rootfs.tree ? rootfs.treeDigest! : treeDigest(tree);
  const base = {
    format: opts.format,
    image: rootfs.image.descriptor.digest,
    treeDigest: digest,
    inventory: summariseTree(tree),
    layers: rootfs.layers.map((l) => ({ digest: l.descriptor.digest, via: l.via, exploded: l.exploded })),
    treeFromCache: rootfs.fromCache,
    overlays: opts.overlays?.length ?? 0,
  };
  if (opts.format === "dir") {
    const { entries, farm, explodedLayers } = await dirEntries(
      tree,
      rootfs,
      store,
      opts.copy ?? false,
      progress,
    );
    const dir = await writeDirectory(opts.output as string, entries, {
      content: opts.copy ? "copy" : "hardlink",
      force: opts.force ?? false,
      durable: opts.durable ?? true,
      progress,
    });
    // Every layer now has a record (contents were needed): the next export reads the tree.
    await rootfs.keepTree();
    return { ...base, output: dir.target, explodedLayers, dir: { ...dir, farm, cachedCheckout: false } };
  }
  const explodedLayers = await rootfs.ensureContent([...fileNodes(tree)].map((n) => n.digest!));
  const written = await writeArchive(
    (buffers) =>
      archiveStream(tree, store, opts.format as Exclude<ExportFormat, "dir">, {
        ...(buffers ? { buffers } : {}),
        ...(opts.zstdLevel ? { zstdLevel: opts.zstdLevel } : {}),
        progress,
      }),
    opts.output,
    opts.force ?? false,
    // Plain tar: file objects are read on this thread while the pool writes (measured:
    // 1.05-1.34 -> 0.90-1.05 s). cpio reads in the pool and zstd keeps both cores busy:
    // there, writes in the pool measured slower (cpio 2.2-2.4 -> 3.0-3.1 s), so they stay here.
    opts.format === "tar",
  );
  await rootfs.keepTree();
  return { ...base, ...written, explodedLayers };
}
