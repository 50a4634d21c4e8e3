/**
 * `rootstock digest REF|DIR|TARBALL|CPIO`: the tree digest (tree module, v1) of
 * whatever holds a root filesystem. The same filesystem gives the same digest
 * whatever carried it: an image, its dir/tar/cpio exports, `podman export`.
 *
 * - image reference (`store:`, `oci:`, `docker://`): layers merged as for an export;
 *   LayerRecords and zstd:chunked TOCs carry every file's sha256, so no file content
 *   is read; other layers are streamed once (verified against digest and diff_id).
 * - directory: scanned (lstat, xattrs, contents hashed).
 * - file: tar or cpio newc, plain, gzip or zstd (by magic bytes), streamed.
 */
import { lstat } from "node:fs/promises";
import type { ContentStore } from "../cas/store.js";
import { RootstockError } from "../errors.js";
import type { Endpoint } from "../image/endpoint.js";
import { summariseTree, type TreeInventory } from "../image/inventory.js";
import type { Digest } from "../oci/digest.js";
import type { Platform } from "../oci/platform.js";
import type { ProgressSink } from "../progress.js";
import { fromTar, scan, type Tree, treeDigest } from "../tree/index.js";
import { type ArchiveInfo, readArchive } from "./archive-input.js";
import { loadImageRootfs } from "./image-rootfs.js";

export interface DigestResult {
  /** What was digested: "image", "dir", or an archive kind such as "tar+zstd". */
  kind: string;
  target: string;
  treeDigest: Digest;
  inventory: TreeInventory;
  /** Images: the manifest digest and how each layer was read. */
  image?: { digest: Digest; layers: Array<{ digest: Digest; via: string }> };
  /** Directories: entries the scan left out (sockets, other mounts). */
  skipped?: Array<{ path: string; reason: string }>;
}

function result(kind: string, target: string, tree: Tree): DigestResult {
  return { kind, target, treeDigest: treeDigest(tree), inventory: summariseTree(tree) };
}

/** Whether a command-line argument names an image rather than a path. */
export function looksLikeReference(text: string): boolean {
  return /^(store|oci|docker):/.test(text);
}

export async function digestImage(
  source: Endpoint,
  store: ContentStore,
  opts: { platform?: Platform; progress?: ProgressSink } = {},
): Promise<DigestResult> {
  const rootfs = await loadImageRootfs(source, store, opts);
  await rootfs.keepTree();
  return {
    kind: "image",
    target: source.name,
    treeDigest: rootfs.treeDigest ?? treeDigest(rootfs.tree),
    inventory: summariseTree(rootfs.tree),
    image: {
      digest: rootfs.image.descriptor.digest,
      layers: rootfs.layers.map((l) => ({ digest: l.descriptor.digest, via: l.via })),
    },
  };
}

function archiveKind(info: ArchiveInfo): string {
  return info.compression === "none" ? info.kind : `${info.kind}+${info.compression}`;
}

export async function digestPath(
  path: string,
  opts: { progress?: ProgressSink } = {},
): Promise<DigestResult> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) throw new RootstockError("NOT_FOUND", `${path}: no such file or directory`);
  if (st.isDirectory()) {
    const { tree, report } = await scan(path, opts.progress ? { progress: opts.progress } : {});
    return { ...result("dir", path, tree), skipped: report.skipped };
  }
  if (!st.isFile())
    throw new RootstockError("INVALID_ARGUMENT", `${path}: not a directory, tarball or cpio archive`);
  const { info, entries } = await readArchive(path);
  const tree = await fromTar(entries, opts.progress ? { progress: opts.progress } : {});
  return result(archiveKind(info), path, tree);
}
