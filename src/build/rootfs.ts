/**
 * Root filesystem directories during a build: making one reproducible (the files
 * mmdebstrap's cleanup/reproducible removes, after our own apt runs too), copying a
 * parent's for a child, clamping a scanned tree's times to SOURCE_DATE_EPOCH, and
 * unpacking an image (its layers in order, whiteouts applied) into a directory for
 * children whose parent was built in an earlier run.
 */
import { spawn } from "node:child_process";
import { lstat, lutimes, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { decodeLayer } from "../compress/layer.js";
import { RootstockError } from "../errors.js";
import type { Endpoint } from "../image/endpoint.js";
import type { Descriptor } from "../oci/types.js";
import { parseImageConfig, parseManifest } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { opaqueDirectory, readTar, whiteoutTarget } from "../tar/index.js";
import { normalisePath } from "../tree/index.js";
import type { Tree } from "../tree/tree.js";
import { runTool } from "./producers/exec.js";

/**
 * Files that differ between two runs of the same install (logs with wall-clock
 * times, caches keyed by inode): mmdebstrap's cleanup/reproducible list, which its
 * own cleanup applies to bases only. `/etc/resolv.conf` and `/etc/hostname` are the
 * build host's (mmdebstrap copies them in); containers get both from the runtime.
 */
export const UNREPRODUCIBLE_FILES = [
  "var/log/dpkg.log",
  "var/log/apt/history.log",
  "var/log/apt/term.log",
  "var/log/alternatives.log",
  "var/log/apt/eipp.log.xz",
  "var/cache/ldconfig/aux-cache",
  "var/lib/dbus/machine-id",
  "etc/resolv.conf",
  "etc/hostname",
];

/**
 * Directories whose time depends on whether a .deb or lists cache was used, not on
 * the inputs (mmdebstrap's sync-in copies the cache's own `partial/`; a cache mounted
 * over them leaves them untouched, apt without one writes in them): they get the epoch.
 */
export const CACHE_DIRECTORIES = [
  "var/cache/apt/archives",
  "var/cache/apt/archives/partial",
  "var/lib/apt/lists",
  "var/lib/apt/lists/partial",
];

/**
 * Removes UNREPRODUCIBLE_FILES (never through a symlinked parent), empties
 * /etc/machine-id and sets CACHE_DIRECTORIES' times to `epoch`.
 */
export async function makeReproducible(rootfs: string, epoch: number): Promise<void> {
  for (const rel of CACHE_DIRECTORIES) {
    if (!(await realParents(rootfs, rel))) continue;
    const info = await lstat(join(rootfs, rel)).catch(() => undefined);
    if (info?.isDirectory()) await lutimes(join(rootfs, rel), epoch, epoch);
  }
  for (const rel of UNREPRODUCIBLE_FILES) {
    if (!(await realParents(rootfs, rel))) continue;
    const info = await lstat(join(rootfs, rel)).catch(() => undefined);
    if (info && !info.isDirectory()) await rm(join(rootfs, rel), { force: true });
  }
  const machineId = join(rootfs, "etc/machine-id");
  const info = await lstat(machineId).catch(() => undefined);
  // machine-id(5): an empty file in images, filled at first boot
  if (info?.isFile() && info.size > 0) {
    await rm(machineId);
    await writeFile(machineId, "", { mode: info.mode & 0o7777 });
  }
}

/** Whether every parent directory of `rel` inside `root` is a real directory (no symlink to follow). */
async function realParents(root: string, rel: string): Promise<boolean> {
  const parts = rel.split("/").slice(0, -1);
  let path = root;
  for (const part of parts) {
    path = join(path, part);
    const info = await lstat(path).catch(() => undefined);
    if (!info?.isDirectory()) return false;
  }
  return true;
}

/**
 * Clamps every mtime to SOURCE_DATE_EPOCH in place (whole seconds), as the layer
 * writer will: diffs then compare what layers keep, so a file only touched after the
 * epoch is no change, and a parent built in this run compares like one unpacked from
 * its layers. The tree must be freshly scanned (its nodes are ours to change).
 */
export function clampTreeTimes(tree: Tree, epoch: number): void {
  for (const [, node] of tree.entries()) {
    if (node.mtime.sec > epoch) node.mtime = { sec: epoch, nsec: 0 };
    else if (node.mtime.nsec !== 0) node.mtime = { sec: node.mtime.sec, nsec: 0 };
  }
}

/** A full copy of a root filesystem (owners, modes, times, xattrs, hard links; reflinks where possible). */
export async function copyRootfs(from: string, to: string, progress: ProgressSink): Promise<void> {
  await runTool({
    what: "copy of the parent root filesystem",
    argv: ["cp", "-a", "--reflink=auto", "--no-target-directory", from, to],
    progress,
  });
}

async function* openLayer(endpoint: Endpoint, layer: Descriptor): AsyncGenerator<Uint8Array> {
  yield* await endpoint.open({ digest: layer.digest, size: layer.size });
}

/**
 * Deletes what a whiteout names, below `root` only: a path with a symlinked or
 * missing parent has nothing below `root` to delete.
 */
async function removeInside(root: string, rel: string): Promise<void> {
  if (!(await realParents(root, rel))) return;
  await rm(join(root, rel), { recursive: true, force: true });
}

/**
 * Unpacks the image `manifest` (in `endpoint`) into the directory `target` (created,
 * must not exist): each layer decoded and checked against its digest and diff_id;
 * whiteouts and opaque markers delete from the layers below (read in a first pass
 * over the layer), then GNU tar extracts the rest as root would (owners, modes,
 * xattrs, devices; it refuses `..` members and defers symlinks that would let later
 * members escape).
 */
export async function unpackImage(
  endpoint: Endpoint,
  manifest: Descriptor,
  target: string,
  options: { progress?: ProgressSink; signal?: AbortSignal } = {},
): Promise<void> {
  const progress = options.progress ?? silentProgress;
  const doc = parseManifest(await endpoint.read(manifest), `${endpoint.name} manifest`);
  const config = parseImageConfig(await endpoint.read(doc.config), `${endpoint.name} config`);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== doc.layers.length) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `${endpoint.name}: ${doc.layers.length} layers but ${diffIds.length} diff_ids in the config`,
    );
  }
  await mkdir(target);
  for (const [i, layer] of doc.layers.entries()) {
    const diffId = diffIds[i]!;
    // Directories a layer changes without an entry of their own keep their attributes
    // (the layer says they did not change): their times are put back after extraction.
    const keepTimes = new Map<string, { atime: Date; mtime: Date }>();
    if (i > 0) {
      const named = new Set<string>();
      const seenParents = new Set<string>();
      // pass 1: deletions this layer makes in the ones below, and directories it replaces
      for await (const entry of readTar(decodeLayer(openLayer(endpoint, layer), layer, diffId))) {
        const name = normalisePath(entry.header.name, `${endpoint.name} layer ${i}`);
        named.add(name);
        const parentDir = name.includes("/") ? name.slice(0, name.lastIndexOf("/")) : "";
        if (parentDir !== "" && !seenParents.has(parentDir)) {
          seenParents.add(parentDir);
          const info = (await realParents(target, name))
            ? await lstat(join(target, parentDir)).catch(() => undefined)
            : undefined;
          if (info?.isDirectory()) keepTimes.set(parentDir, { atime: info.atime, mtime: info.mtime });
        }
        const opaque = opaqueDirectory(name);
        const gone = whiteoutTarget(name);
        if (opaque !== undefined) {
          const dir = join(target, opaque);
          if ((await realParents(target, `${opaque}/x`)) && (await lstat(dir).catch(() => undefined))) {
            for (const child of await readdir(dir))
              await rm(join(dir, child), { recursive: true, force: true });
          }
        } else if (gone !== undefined) await removeInside(target, gone);
        else if (entry.header.type !== "dir") {
          const info = await lstat(join(target, name)).catch(() => undefined);
          if (info?.isDirectory()) await removeInside(target, name);
        }
      }
      for (const dir of named) keepTimes.delete(dir);
    }
    // pass 2: the layer's content
    await extractTar(
      decodeLayer(openLayer(endpoint, layer), layer, diffId),
      target,
      progress,
      options.signal,
    );
    for (const [dir, times] of keepTimes) {
      if (await realParents(target, `${dir}/x`)) await lutimes(join(target, dir), times.atime, times.mtime);
    }
  }
}

/** Streams a tar into `tar -x` in `target`, whiteout entries left out; fails on any tar error. */
async function extractTar(
  source: AsyncIterable<Uint8Array>,
  target: string,
  progress: ProgressSink,
  signal?: AbortSignal,
): Promise<void> {
  signal?.throwIfAborted();
  const argv = [
    "-x",
    "-p",
    "--xattrs",
    "--xattrs-include=*",
    "--numeric-owner",
    // directory times at the very end: GNU tar's default restores a directory's time when
    // it thinks the directory is done, which entries sorted by name bytes can defeat
    "--delay-directory-restore",
    "--exclude=.wh.*",
    "-f",
    "-",
    "-C",
    target,
  ];
  const child = spawn("tar", argv, { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  let closed = false;
  let wake: (() => void) | undefined;
  const exited = new Promise<number | string>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, sig) => {
      closed = true;
      wake?.();
      resolve(code ?? sig ?? "unknown");
    });
  });
  // tar exiting early closes its stdin: the exit status says why, not EPIPE
  child.stdin.on("error", () => {});
  try {
    for await (const chunk of source) {
      // read to the end even when tar is done: decodeLayer checks digest and diff_id there
      if (closed) continue;
      if (!child.stdin.write(chunk)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          child.stdin.once("drain", resolve);
        });
        wake = undefined;
      }
    }
    child.stdin.end();
  } catch (err) {
    child.kill("SIGKILL");
    await exited.catch(() => undefined);
    throw err;
  }
  const code = await exited;
  if (code !== 0) {
    const last = stderr.trim().split("\n").at(-1) ?? "";
    progress({ type: "note", message: `tar -x: ${stderr.trim()}` });
    throw new RootstockError("TOOL_FAILED", `unpacking a layer into ${target}: tar exit ${code}: ${last}`);
  }
}
