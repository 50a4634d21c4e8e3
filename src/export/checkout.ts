/**
 * The hardlink dir export of an image seen before, written straight from the store's
 * cached tree (tree-cache.ts): the path `export --format dir` takes on a farm every
 * time after the first. No Tree, no entry list, no writer queue: the farm objects are
 * checked (one lstat each) before anything is written, then the sorted entries become
 * mkdir, link and symlink calls in order, directories get their metadata last, the
 * filesystem is flushed and the directory renamed into place.
 *
 * It takes only the case it can do whole, and says so before writing anything
 * (undefined): the target must not exist, its parent must be a directory on the
 * farm's filesystem, every file with content (and every device node or fifo) must
 * have its farm object already, and what is written here instead (directories,
 * symlinks, empty files) must carry no xattrs. Without root, other owners of those
 * are skipped and listed, as the general writer does.
 * Everything else (a first export, overlays, --copy, an existing target, another
 * filesystem) goes through the general writer (safe-dir.ts), which gives the same
 * tree; so does an object that cannot take one more link (EMLINK), found while
 * writing: the work directory is removed first.
 *
 * Safety is the general writer's: the work directory is new (mode 0700), each
 * entry's path must be normal and its parent a directory this checkout made, so no
 * path goes through a symlink; a hard link names an earlier file of the same
 * checkout; a failure removes the work directory.
 */
import {
  chmodSync,
  closeSync,
  constants,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
} from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { ContentStore } from "../cas/store.js";
import { RootstockError } from "../errors.js";
import type { ProgressSink } from "../progress.js";
import { normalisePath, type TreeNode } from "../tree/index.js";
import { mtimeSeconds, parentPath } from "./entry.js";
import { type FarmStats, LinkFarm } from "./farm.js";
import type { CachedRootfs } from "./image-rootfs.js";
import { lstatOrUndefined, PARTIAL_SUFFIX, type SafeDirResult } from "./safe-dir.js";
import { runTool } from "./special-files.js";

/** A farm object that cannot take one more link: the checkout is declined, not failed. */
const LINK_REFUSED = Symbol("link refused");

export interface CheckoutResult {
  rootfs: CachedRootfs;
  dir: SafeDirResult & { farm: FarmStats };
}

/**
 * Checks out the image's cached tree (`readCachedRootfs`) into `target` by
 * hardlinking the farm, or returns undefined (leaving nothing behind) when the
 * general path must do it.
 */
export async function checkoutCached(
  rootfs: CachedRootfs,
  store: ContentStore,
  target: string,
  opts: { durable?: boolean; progress?: ProgressSink },
): Promise<CheckoutResult | undefined> {
  const targetPath = resolve(target);
  const work = targetPath + PARTIAL_SUFFIX;
  if ((await lstatOrUndefined(targetPath)) || (await lstatOrUndefined(work))) return undefined;
  // A missing parent is the general writer's to report; another filesystem than the
  // farm's takes copies.
  const parent = await stat(dirname(targetPath)).catch(() => undefined);
  if (!parent?.isDirectory() || parent.dev !== (await stat(store.root)).dev) return undefined;
  const { entries, farmKeys } = rootfs;
  const root = entries[0];
  if (root?.[0] !== "" || root[1].type !== "dir") return undefined;

  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const farm = new LinkFarm(store.root);
  const farmPath = new Map<TreeNode, string>();
  for (const [, node] of entries) {
    const key = farmKeys.get(node);
    if (key !== undefined) {
      if (!farm.canHold(node)) return undefined;
      farmPath.set(node, farm.pathOf(key));
    } else if (node.xattrs.length > 0) {
      return undefined;
    }
  }
  for (const [node, path] of farmPath) if (!farm.lookup(node, path)) return undefined;

  const progress = opts.progress;
  progress?.({ type: "start", id: "export-dir", label: `export to ${targetPath}`, unit: "files" });
  const result: SafeDirResult = {
    target: targetPath,
    entries: 0,
    linked: 0,
    copied: 0,
    written: 0,
    skipped: [],
  };
  mkdirSync(work, { mode: 0o700 });
  try {
    const dirs: Array<[string, TreeNode]> = [root];
    const dirPaths = new Set<string>([""]);
    const firstPath = new Map<TreeNode, string>();
    const abs = (path: string) => (path === "" ? work : `${work}/${path}`);
    // As the general writer does: without root, an owner that is not the caller's is
    // skipped and listed (farm objects were checked to be the caller's already).
    const owner = (path: string, at: string, node: TreeNode) => {
      if (uid === 0) lchownSync(at, node.uid, node.gid);
      else if (node.uid !== uid || node.gid !== gid) {
        const reason = `owner ${node.uid}:${node.gid} needs root`;
        result.skipped.push({ path: path === "" ? "." : path, what: "owner", reason });
      }
    };
    for (let i = 1; i < entries.length; i++) {
      const [path, node] = entries[i]!;
      // A normal path under a directory made here: nothing can lead outside `work`.
      const parent = parentPath(path);
      if (normalisePath(path) !== path || path === "" || !dirPaths.has(parent === "." ? "" : parent)) {
        throw new RootstockError(
          "STORE_CORRUPT",
          `image tree cache ${rootfs.image.descriptor.digest}: entry ${JSON.stringify(path)} is not under a directory of the tree`,
        );
      }
      const at = abs(path);
      const first = node.type === "file" ? firstPath.get(node) : undefined;
      if (first !== undefined) {
        linkSync(abs(first), at);
        continue;
      }
      switch (node.type) {
        case "dir":
          mkdirSync(at, { mode: 0o700 });
          dirPaths.add(path);
          dirs.push([path, node]);
          break;
        case "symlink": {
          const linkTarget = node.linkTarget ?? "";
          if (linkTarget === "" || linkTarget.includes("\0")) {
            throw new RootstockError(
              "UNSAFE_PATH",
              `entry ${JSON.stringify(path)}: symlink target is empty or contains NUL`,
            );
          }
          symlinkSync(linkTarget, at);
          owner(path, at, node);
          lutimesSync(at, mtimeSeconds(node), mtimeSeconds(node));
          break;
        }
        default: {
          const object = farmPath.get(node);
          if (object) {
            try {
              linkSync(object, at);
            } catch (err) {
              // Too many links to the object (or linking refused): the general writer copies.
              const code = (err as NodeJS.ErrnoException).code;
              throw code === "EMLINK" || code === "EPERM" ? LINK_REFUSED : err;
            }
            if (node.type === "file") result.linked++;
          } else {
            // An empty regular file (the farm holds contents only).
            const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
            closeSync(openSync(at, flags, 0o600));
            owner(path, at, node);
            chmodSync(at, node.mode & 0o7777);
            lutimesSync(at, mtimeSeconds(node), mtimeSeconds(node));
            result.written++;
          }
          if (node.type === "file") firstPath.set(node, path);
        }
      }
    }
    // Directories last (entries made in them changed their mtimes), deepest first.
    for (let i = dirs.length - 1; i >= 0; i--) {
      const [path, node] = dirs[i]!;
      const at = abs(path);
      owner(path, at, node);
      chmodSync(at, node.mode & 0o7777);
      lutimesSync(at, mtimeSeconds(node), mtimeSeconds(node));
    }
    if (opts.durable ?? true) await runTool("sync", ["-f", work], "sync");
    await rename(work, targetPath);
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    if (err !== LINK_REFUSED) throw err;
    progress?.({ type: "done", id: "export-dir", summary: "handed to the general writer" });
    return undefined;
  }
  result.entries = entries.length;
  progress?.({ type: "done", id: "export-dir", summary: `${result.entries} entries` });
  return { rootfs, dir: { ...result, farm: farm.stats } };
}
