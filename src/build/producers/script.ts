/**
 * The `script` producer: runs an image's steps (apt-get install, file copies,
 * scripts, commands) in a chroot of a root filesystem directory, in place. The
 * caller hands in a full copy of the parent's root filesystem.
 *
 * Isolation: `unshare --mount --pid --fork` gives the run its own mount and pid
 * namespaces; /proc, /sys (read-only), a minimal /dev and resolv.conf are mounted
 * inside that namespace only, so they vanish with its last process, even when we
 * are killed: no mount ever shows up on the host. Files are copied into a staging
 * directory and installed from inside the chroot, so a symlink in the image can
 * never redirect a write outside the root directory.
 */
import { cp, lstat, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { RootstockError } from "../../errors.js";
import { type ProgressSink, silentProgress } from "../../progress.js";
import type { ScriptStep } from "../graph.js";
import { resolveInside } from "../inputs.js";
import { runTool, STEP_MARKER } from "./exec.js";
import { mountsUnder } from "./mounts.js";

/** Inside the root filesystem, removed after the run. */
export const STAGING_DIR = "/.rootstock-build";

export interface ScriptProducer {
  /** The root filesystem to modify (a copy of the parent's), in place. */
  rootfs: string;
  step: ScriptStep;
  /** Directory of images.yaml: file and script paths are relative to it. */
  baseDir: string;
  /** Environment for the steps (the image's, inherited from its parents). Default: step.env. */
  env?: Record<string, string>;
  sourceDateEpoch?: number;
  /**
   * A host directory of .deb files shared between builds (a CI cache, not an input):
   * bind-mounted over /var/cache/apt/archives inside the namespace only, so apt
   * downloads into it and nothing of it lands in the image.
   */
  debCache?: string;
  /**
   * A host directory for apt's package lists, bind-mounted over /var/lib/apt/lists
   * the same way: `apt-get update` then only checks the mirror's Release file when
   * nothing changed. One build at a time per directory (apt locks it).
   */
  aptListsCache?: string;
  progress?: ProgressSink;
  signal?: AbortSignal;
}

function q(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** The shell driver run inside the chroot (pure, so its text is testable). */
export function scriptDriver(
  step: ScriptStep,
  options: { keepDebs?: boolean; keepLists?: boolean } = {},
): string {
  const lines = ["set -eu", `step() { printf '${STEP_MARKER}%s\\n' "$1" >&2; }`];
  if (step.packages.length > 0) {
    lines.push(
      `step ${q(`apt-get install ${step.packages.join(" ")}`)}`,
      // no daemon starts inside a build
      "policy_added=",
      "if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d;" +
        " chmod 0755 /usr/sbin/policy-rc.d; policy_added=1; fi",
      "apt-get update -qq",
      // no fsync per file: the directory is scanned after the run, never used if it fails
      `apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-unsafe-io -- ${step.packages.map(q).join(" ")}`,
      // with a .deb cache mounted, clean only apt's own caches (the .debs are the cache's)
      options.keepDebs ? "rm -f /var/cache/apt/*.bin" : "apt-get clean",
      // the lists, not apt's lock and partial/: the image is the same with a lists cache or without
      ...(options.keepLists
        ? []
        : [
            "find /var/lib/apt/lists -mindepth 1 -maxdepth 1 ! -name lock ! -name partial -exec rm -rf {} +",
            "rm -rf /var/lib/apt/lists/partial/*",
          ]),
      'if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi',
    );
  }
  step.files.forEach((file, i) => {
    const staged = `${STAGING_DIR}/files/${i}`;
    lines.push(
      `step ${q(`copy ${file.src} to ${file.dest}`)}`,
      `mkdir -p "$(dirname ${q(file.dest)})"`,
      `if [ -d ${q(staged)} ]; then mkdir -p ${q(file.dest)} && cp -R ${q(`${staged}/.`)} ${q(file.dest)};` +
        ` else rm -f ${q(file.dest)} && cp ${q(staged)} ${q(file.dest)} && chmod ${file.mode.toString(8)} ${q(file.dest)}; fi`,
    );
  });
  step.scripts.forEach((script, i) => {
    const staged = `${STAGING_DIR}/scripts/${i}`;
    // executed, so a #! line picks the interpreter; a file without one runs in sh
    lines.push(`step ${q(`script ${script}`)}`, `chmod 0755 ${q(staged)}`, q(staged));
  });
  for (const command of step.run) lines.push(`step ${q(`run ${command}`)}`, `sh -c ${q(command)}`);
  return `${lines.join("\n")}\n`;
}

/** The host-side mount-and-chroot script; $1 is the root directory. */
const NAMESPACE_SETUP = `set -eu
R="$1"; shift
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount --rbind /sys "$R/sys" && mount -o remount,bind,ro "$R/sys"
mount -t tmpfs -o mode=0755,nosuid dev "$R/dev"
for d in null zero full random urandom tty; do
  : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts" 2>/dev/null && ln -s pts/ptmx "$R/dev/ptmx" || true
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
# the .deb cache (checked to be a real directory in the root by the caller)
if [ -n "\${ROOTSTOCK_DEB_CACHE:-}" ]; then
  mount --bind "$ROOTSTOCK_DEB_CACHE" "$R/var/cache/apt/archives"
fi
if [ -n "\${ROOTSTOCK_APT_LISTS:-}" ]; then
  mount --bind "$ROOTSTOCK_APT_LISTS" "$R/var/lib/apt/lists"
fi
# a copy of the host's resolv.conf: a script writing to it never reaches the host
if [ -f "$R/etc/resolv.conf" ] && [ ! -L "$R/etc/resolv.conf" ] && [ -f "$R${STAGING_DIR}/resolv.conf" ]; then
  mount --bind "$R${STAGING_DIR}/resolv.conf" "$R/etc/resolv.conf"
fi
exec chroot "$R" "$@"
`;

/** Mount points must be real directories inside the root, never symlinks out of it. */
async function ensureDirectory(rootfs: string, name: string): Promise<boolean> {
  const path = join(rootfs, name);
  const info = await lstat(path).catch(() => undefined);
  if (!info) {
    await mkdir(path, { mode: 0o755 });
    return true;
  }
  if (!info.isDirectory()) {
    throw new RootstockError("UNSAFE_PATH", `${path} is not a directory (a symlink?): cannot mount on it`);
  }
  return false;
}

export async function produceScript(p: ScriptProducer): Promise<void> {
  const progress = p.progress ?? silentProgress;
  if (process.getuid?.() !== 0) {
    throw new RootstockError(
      "PERMISSION",
      "the script producer needs root (unshare --mount --pid and chroot): run the build as root",
    );
  }
  const shell = await lstat(join(p.rootfs, "bin/sh")).catch(() => undefined);
  if (!shell) throw new RootstockError("NOT_FOUND", `${p.rootfs} has no /bin/sh: not a root filesystem`);

  const staging = join(p.rootfs, STAGING_DIR);
  const created: string[] = [];
  // mkdir fails if it exists: never write through something the image planted there
  await mkdir(staging, { mode: 0o700 });
  let resolvCreated = false;
  try {
    await mkdir(join(staging, "files"));
    await mkdir(join(staging, "scripts"));
    for (const [i, file] of p.step.files.entries()) {
      const src = await resolveInside(p.baseDir, file.src, "files");
      await cp(src, join(staging, "files", String(i)), { recursive: true, dereference: false });
    }
    for (const [i, script] of p.step.scripts.entries()) {
      const src = await resolveInside(p.baseDir, script, "scripts");
      await writeFile(join(staging, "scripts", String(i)), await readFile(src), { mode: 0o755 });
    }
    const useCache = p.debCache !== undefined && p.step.packages.length > 0;
    if (useCache) {
      await mkdir(join(p.debCache!, "partial"), { recursive: true });
      // every component a real directory: a bind mount must not follow a symlink out of the root
      let parent = p.rootfs;
      for (const part of ["var", "cache", "apt", "archives"]) {
        await ensureDirectory(parent, part);
        parent = join(parent, part);
      }
    }
    const useLists = p.aptListsCache !== undefined && p.step.packages.length > 0;
    if (useLists) {
      await mkdir(join(p.aptListsCache!, "partial"), { recursive: true });
      let parent = p.rootfs;
      for (const part of ["var", "lib", "apt", "lists"]) {
        await ensureDirectory(parent, part);
        parent = join(parent, part);
      }
    }
    await writeFile(
      join(staging, "run.sh"),
      scriptDriver(p.step, { keepDebs: useCache, keepLists: useLists }),
    );
    const hostResolv = await readFile("/etc/resolv.conf").catch(() => undefined);
    if (hostResolv) await writeFile(join(staging, "resolv.conf"), hostResolv, { mode: 0o644 });
    for (const dir of ["proc", "sys", "dev"]) if (await ensureDirectory(p.rootfs, dir)) created.push(dir);
    await ensureDirectory(p.rootfs, "etc");
    const resolv = join(p.rootfs, "etc/resolv.conf");
    if (!(await lstat(resolv).catch(() => undefined))) {
      // an empty file to bind the host's over; removed afterwards
      await writeFile(resolv, "");
      resolvCreated = true;
    }

    const env = {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: "/root",
      LANG: "C.UTF-8",
      DEBIAN_FRONTEND: "noninteractive",
      ...(p.sourceDateEpoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(p.sourceDateEpoch) }),
      ...(p.env ?? p.step.env),
    };
    const id = `script:${p.rootfs}`;
    progress({ type: "start", id, label: "run steps in chroot" });
    await runTool({
      what: "script producer",
      env: {
        ...process.env,
        ROOTSTOCK_DEB_CACHE: useCache ? p.debCache! : "",
        ROOTSTOCK_APT_LISTS: useLists ? p.aptListsCache! : "",
      },
      argv: [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--propagation",
        "private",
        "sh",
        "-c",
        NAMESPACE_SETUP,
        "sh",
        p.rootfs,
        "/usr/bin/env",
        "-i",
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        "/bin/sh",
        `${STAGING_DIR}/run.sh`,
      ],
      progress,
      ...(p.signal ? { signal: p.signal } : {}),
    });
    progress({ type: "done", id });
  } finally {
    // The namespace's mounts died with it; make sure before deleting anything.
    const left = await mountsUnder(p.rootfs);
    if (left.length > 0) {
      // biome-ignore lint/correctness/noUnsafeFinally: a mount left behind must stop everything
      throw new RootstockError("INTERNAL", `${left[0]} is still mounted after the script producer`);
    }
    await rm(staging, { recursive: true, force: true });
    if (resolvCreated) await rm(join(p.rootfs, "etc/resolv.conf"), { force: true });
    for (const dir of created) await rm(join(p.rootfs, dir), { recursive: true, force: true });
  }
}
