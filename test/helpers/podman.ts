/**
 * podman 4.3 as peers.md says it runs on this kind of machine: a private mount
 * namespace that hides the hybrid cgroup2 mount from crun, lower rlimits, no
 * network (never podman's default one), and a storage of its own under `dir`.
 *
 *   const podman = await podmanSandbox({ dir, insecureRegistry: reg.host, partialPulls: true });
 *   await podman.run("pull", "-q", image);          // execFile, stdout/stderr returned
 *   measure("podman pull", `${podman.command} pull -q ${image}`, { env: podman.env });
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const exec = promisify(execFile);

const NAMESPACE_SCRIPT = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec podman "$@"';

export interface PodmanSandboxOptions {
  /** Holds the configuration files and podman's storage (graph/, run/). */
  dir: string;
  /** Storage driver: `overlay` (default) or `vfs`. */
  driver?: "overlay" | "vfs";
  /** Enable zstd:chunked partial pulls (and no hard links, no ostree repos). */
  partialPulls?: boolean;
  /** A plain-http registry on 127.0.0.1 (`host:port`) to allow. */
  insecureRegistry?: string;
}

export interface PodmanSandbox {
  /** The environment that points podman at this sandbox's configuration. */
  env: NodeJS.ProcessEnv;
  /** A shell command prefix: `${command} ARGS…` runs podman in the sandbox. */
  command: string;
  run(...args: string[]): Promise<{ stdout: string; stderr: string }>;
}

export async function podmanSandbox(opts: PodmanSandboxOptions): Promise<PodmanSandbox> {
  const conf = join(opts.dir, "conf");
  await mkdir(conf, { recursive: true });
  await writeFile(
    join(conf, "containers.conf"),
    '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\nnetns = "none"\n',
  );
  let storage =
    `[storage]\ndriver = "${opts.driver ?? "overlay"}"\n` +
    `graphroot = "${join(opts.dir, "graph")}"\nrunroot = "${join(opts.dir, "run")}"\n`;
  if (opts.partialPulls) {
    // A string, not a TOML boolean (peers.md).
    storage +=
      '[storage.options]\npull_options = {enable_partial_images = "true", use_hard_links = "false", ostree_repos = ""}\n';
  }
  await writeFile(join(conf, "storage.conf"), storage);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTAINERS_CONF: join(conf, "containers.conf"),
    CONTAINERS_STORAGE_CONF: join(conf, "storage.conf"),
  };
  if (opts.insecureRegistry) {
    await writeFile(
      join(conf, "registries.conf"),
      `[[registry]]\nlocation = "${opts.insecureRegistry}"\ninsecure = true\n`,
    );
    env.CONTAINERS_REGISTRIES_CONF = join(conf, "registries.conf");
  }
  return {
    env,
    command: `unshare -m --propagation private sh -c '${NAMESPACE_SCRIPT}' podman`,
    run: (...args: string[]) =>
      exec("unshare", ["-m", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT, "podman", ...args], {
        env,
        maxBuffer: 64 << 20,
      }),
  };
}
