/**
 * The `mmdebstrap` producer: a Debian base root filesystem as a directory.
 * mmdebstrap mounts /proc, /sys and /dev inside the target while it works; if it
 * dies, those mounts can stay behind, so on failure we unmount everything under the
 * target before removing it (never the other way round).
 */
import { mkdir, readdir } from "node:fs/promises";
import { RootstockError } from "../../errors.js";
import { type ProgressSink, silentProgress } from "../../progress.js";
import type { MmdebstrapOptions } from "../graph.js";
import { resolveInside } from "../inputs.js";
import { runTool } from "./exec.js";
import { removeTree } from "./mounts.js";

export interface MmdebstrapProducer {
  options: MmdebstrapOptions;
  /** Directory of images.yaml: hook paths are relative to it. */
  baseDir: string;
  /** Where the root filesystem goes; must not exist, or be empty. */
  target: string;
  /** `root` needs uid 0; `unshare` needs subuid/subgid ranges. Default: root when uid 0. */
  mode?: "root" | "unshare";
  /** Clamps timestamps mmdebstrap and dpkg write (reproducibility). */
  sourceDateEpoch: number;
  /**
   * A directory of .deb files shared between builds (a CI cache): synced into the
   * target before download and back out after installation. Not an input of the tag:
   * the same packages come from the archive or from it.
   */
  debCache?: string;
  progress?: ProgressSink;
  signal?: AbortSignal;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** The mmdebstrap argv for a definition (pure; hooks given as absolute paths). */
export function mmdebstrapArgs(
  options: MmdebstrapOptions,
  target: string,
  mode: "root" | "unshare",
  hookPaths: MmdebstrapOptions["hooks"],
  debCache?: string,
): string[] {
  const args = [
    "mmdebstrap",
    `--mode=${mode}`,
    "--format=directory",
    `--variant=${options.variant}`,
    `--architectures=${options.architecture}`,
    `--components=${options.components.join(",")}`,
  ];
  if (options.include.length > 0) args.push(`--include=${options.include.join(",")}`);
  for (const opt of options.aptOptions) args.push(`--aptopt=${opt}`);
  for (const opt of options.dpkgOptions) args.push(`--dpkgopt=${opt}`);
  if (debCache) {
    // mmdebstrap's own recipe: keep the .debs until the customize phase, then sync them out
    args.push(
      "--skip=essential/unlink",
      `--setup-hook=mkdir -p "$1/var/cache/apt/archives/"`,
      `--setup-hook=sync-in ${debCache} /var/cache/apt/archives/`,
      // extract and custom variants have no customize phase
      `--${["extract", "custom"].includes(options.variant) ? "extract" : "customize"}-hook=sync-out /var/cache/apt/archives ${debCache}`,
    );
  }
  for (const kind of ["setup", "extract", "essential", "customize"] as const) {
    // mmdebstrap runs a hook with the root directory as $1
    for (const hook of hookPaths[kind]) args.push(`--${kind}-hook=sh ${shellQuote(hook)} "$1"`);
  }
  args.push(options.suite, target, ...options.mirrors);
  return args;
}

export async function produceMmdebstrap(p: MmdebstrapProducer): Promise<void> {
  const progress = p.progress ?? silentProgress;
  const mode = p.mode ?? (process.getuid?.() === 0 ? "root" : "unshare");
  if (mode === "root" && process.getuid?.() !== 0) {
    throw new RootstockError(
      "PERMISSION",
      "mmdebstrap --mode=root needs root; use mode unshare (needs subuids)",
    );
  }
  const existing = await readdir(p.target).catch(() => undefined);
  if (existing && existing.length > 0) {
    throw new RootstockError("ALREADY_EXISTS", `mmdebstrap target ${p.target} is not empty`);
  }
  const resolveHooks = async (paths: string[]) =>
    Promise.all(paths.map((h) => resolveInside(p.baseDir, h, "mmdebstrap hook")));
  const h = p.options.hooks;
  const hooks = {
    setup: await resolveHooks(h.setup),
    extract: await resolveHooks(h.extract),
    essential: await resolveHooks(h.essential),
    customize: await resolveHooks(h.customize),
  };
  await mkdir(p.target, { recursive: true });
  if (p.debCache) await mkdir(p.debCache, { recursive: true });
  const id = `mmdebstrap:${p.target}`;
  progress({ type: "start", id, label: `mmdebstrap ${p.options.suite} (${p.options.architecture})` });
  try {
    await runTool({
      what: "mmdebstrap",
      argv: mmdebstrapArgs(p.options, p.target, mode, hooks, p.debCache),
      env: { ...process.env, SOURCE_DATE_EPOCH: String(p.sourceDateEpoch), LC_ALL: "C.UTF-8" },
      progress,
      ...(p.signal ? { signal: p.signal } : {}),
    });
  } catch (err) {
    await removeTree(p.target);
    throw err;
  }
  progress({ type: "done", id });
}
