/**
 * Real Debian root filesystems for tests and benchmarks, built with mmdebstrap from
 * Debian's archive on first use and cached outside the repository (never committed).
 * Several test processes may ask at once: one builds under a lock, the others wait.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const FIXTURE_DIR = process.env.ROOTSTOCK_FIXTURES ?? "/var/tmp/rootstock-fixtures";

/**
 * essential: `mmdebstrap --variant=essential bookworm` (~140 MB, ~10 s).
 * reference: `mmdebstrap --variant=apt --include=python3,libgl1-mesa-dri bookworm`
 * (~420 MB, hardlinks and character devices): the benchmark root filesystem.
 */
export type DebianVariant = "essential" | "reference";

const VARIANT_ARGS: Record<DebianVariant, string[]> = {
  essential: ["--variant=essential"],
  reference: ["--variant=apt", "--include=python3,libgl1-mesa-dri"],
};

/** Runs `fn` holding the fixture lock `name` (other test processes wait; stale locks are broken). */
export async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(FIXTURE_DIR, { recursive: true });
  const lockPath = join(FIXTURE_DIR, `${name}.lock`);
  for (let waited = 0; ; waited += 500) {
    try {
      const handle = await open(lockPath, "wx");
      await handle.write(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // A lock older than 15 minutes belongs to a process that died.
      const info = await stat(lockPath).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > 15 * 60_000) await rm(lockPath, { force: true });
      if (waited > 20 * 60_000) throw new Error(`fixture lock ${lockPath} held too long`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}

/** Path of a tarball of the variant's root filesystem, as mmdebstrap writes it. */
export async function debianRootfsTar(variant: DebianVariant = "essential"): Promise<string> {
  const target = join(FIXTURE_DIR, `debian-${variant}.tar`);
  if (existsSync(target)) return target;
  return withLock(`debian-${variant}`, async () => {
    if (existsSync(target)) return target;
    const partial = `${target}.partial`;
    await rm(partial, { force: true });
    await run(
      "mmdebstrap",
      ["--quiet", "--mode=root", "--format=tar", ...VARIANT_ARGS[variant], "bookworm", partial],
      {
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" },
      },
    );
    await rename(partial, target);
    return target;
  });
}

/** Path of a directory holding the variant's root filesystem (extracted as root). */
export async function debianRootfsDir(variant: DebianVariant = "essential"): Promise<string> {
  const target = join(FIXTURE_DIR, `debian-${variant}.dir`);
  if (existsSync(`${target}.complete`)) return target;
  const tar = await debianRootfsTar(variant);
  return withLock(`debian-${variant}-dir`, async () => {
    if (existsSync(`${target}.complete`)) return target;
    await rm(target, { recursive: true, force: true });
    await mkdir(target, { recursive: true });
    await run("tar", [
      "-x",
      "-p",
      "--xattrs",
      "--xattrs-include=*",
      "--numeric-owner",
      "-f",
      tar,
      "-C",
      target,
    ]);
    // The marker sits beside the tree, so the tree holds exactly what mmdebstrap made.
    await (await open(`${target}.complete`, "w")).close();
    return target;
  });
}

/** Whether a command is on PATH (for tests that need a peer tool). */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    await run("sh", ["-c", `command -v ${name}`]);
    return true;
  } catch {
    return false;
  }
}
