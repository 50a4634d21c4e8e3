/**
 * Mount hygiene for producers: a killed mmdebstrap or chroot can leave /proc, /sys
 * or /dev mounted inside a root directory, and `rm -rf` on such a tree would delete
 * the host's files through the mount. So: list mounts under a directory from
 * /proc/self/mountinfo, unmount them deepest first, and remove a tree only when no
 * mount is left in it.
 */
import { execFile } from "node:child_process";
import { readFile, realpath, rm } from "node:fs/promises";
import { sep } from "node:path";
import { promisify } from "node:util";
import { RootstockError } from "../../errors.js";

const run = promisify(execFile);

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Mount points at or below `dir` in this process's mount namespace, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const root = await realpath(dir).catch(() => dir);
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const points = info
    .split("\n")
    .filter(Boolean)
    .map((line) => unescapeMountPath(line.split(" ")[4] ?? ""))
    .filter((p) => p === root || p.startsWith(root + sep));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below `dir` (lazily when busy); throws if something stays mounted. */
export async function unmountAll(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const points = await mountsUnder(dir);
    if (points.length === 0) return;
    for (const point of points) {
      await run("umount", [point]).catch(() => run("umount", ["--lazy", point]).catch(() => undefined));
    }
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) {
    throw new RootstockError("PERMISSION", `cannot unmount ${left.join(", ")}: unmount them by hand`);
  }
}

/** Removes a root directory tree after making sure nothing is mounted in it. */
export async function removeTree(dir: string): Promise<void> {
  await unmountAll(dir);
  const left = await mountsUnder(dir);
  if (left.length > 0)
    throw new RootstockError("INTERNAL", `refusing to remove ${dir}: ${left[0]} is mounted`);
  await rm(dir, { recursive: true, force: true });
}
