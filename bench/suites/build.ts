/**
 * The build module:
 * 1. planning speed: a no-change re-plan of the Mesa example (parse, validate, hash
 *    every input file, compute tags, compare with the destination) as a fresh process,
 *    through tsx and through the compiled CLI, next to the floor (Node + tsx doing
 *    nothing, sha256sum of the same files). Goal: under 2 s.
 * 2. layer creation from the reference rootfs directory (scan, diff against empty,
 *    reproducible tar, zstd:chunked default) next to encoding the same tree's tarball
 *    alone (goal: at most 1.3x) and buildah committing the same directory.
 * 3. the full example (x86_64) built into a fresh store from a warm .deb cache (kept
 *    in /var/tmp/rootstock-bench-build between runs), built again (nothing to do: same
 *    tags), and re-planned with the compiled CLI against that store.
 *    ROOTSTOCK_BENCH_BUILD_EXAMPLE=0 skips it (minutes; needs root and Debian's archive).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { debianRootfsDir, debianRootfsTar } from "../../test/helpers/fixtures.js";
import { formatTable, type Measurement, measure, ourOp } from "../lib.js";

const exec = promisify(execFile);
const file = "examples/mesa/images.yaml";

const withBytes = (m: Measurement & { stdout: string }): Measurement => ({
  ...m,
  bytes: Number(m.stdout.trim().split("\n").pop()) || undefined,
});

/** Compiles src/ into `dir/dist` (beside a package.json and node_modules link), not into the repository's dist/. */
async function compileCli(dir: string): Promise<string> {
  await exec("npx", ["tsc", "-p", "tsconfig.json", "--outDir", join(dir, "dist")]).catch(() => {
    // other modules may be mid-work: tsc still emits, which is all the bench needs
  });
  await copyFile("package.json", join(dir, "package.json"));
  await symlink(resolve("node_modules"), join(dir, "node_modules"));
  const main = join(dir, "dist", "cli", "main.js");
  if (!existsSync(main)) throw new Error("tsc emitted no dist/cli/main.js");
  return main;
}

async function planRows(work: string, cli: string): Promise<Measurement[]> {
  const state = join(work, "state.json");
  await measure("write state", ourOp("build-plan", file, state, "--write-state"));
  return [
    await measure("node + tsx, empty script", [process.execPath, "--import", "tsx", "-e", ""]),
    await measure("node, empty script", [process.execPath, "-e", ""]),
    await measure(
      "sha256sum of the example's files",
      "find examples/mesa -type f | xargs sha256sum >/dev/null",
    ),
    {
      ...(await measure("plan function, no change (10 images, tsx)", ourOp("build-plan", file, state))),
      note: "goal < 2 s",
    },
    {
      ...(await measure("rootstock plan, empty store (dist)", [
        process.execPath,
        cli,
        "--store",
        join(work, "empty-store"),
        "plan",
        file,
      ])),
      note: "CLI: reads the store too",
    },
  ];
}

async function layerRows(work: string): Promise<Measurement[]> {
  const dir = await debianRootfsDir("reference");
  const tar = await debianRootfsTar("reference");
  await measure("warm-up", `tar -cf - -C ${dir} . | cat >/dev/null; cat ${tar} >/dev/null`);
  const storage = join(work, "buildah");
  const buildah = `buildah --root ${storage}/root --runroot ${storage}/run --storage-driver vfs`;
  const rows: Measurement[] = [
    withBytes(
      await measure(
        "encodeLayer zstd:chunked of the tarball",
        ourOp("compress-encode", tar, join(work, "tar.zst"), "zstd:chunked"),
      ),
    ),
    {
      ...withBytes(
        await measure("rootstock layer from the directory", ourOp("build-layer", dir, join(work, "dir.zst"))),
      ),
      note: "scan + diff + tar + zstd:chunked; goal ≤ 1.3x",
    },
  ];
  try {
    await rm(storage, { recursive: true, force: true });
    rows.push({
      ...(await measure(
        "buildah from scratch + copy + commit",
        `c=$(${buildah} from scratch) && ${buildah} copy --quiet $c ${dir} / >/dev/null && ${buildah} commit --quiet $c localhost/bench-img >/dev/null`,
      )),
      note: "vfs storage, uncompressed layer",
    });
  } catch (err) {
    rows.push({
      label: "buildah commit",
      wallSeconds: Number.NaN,
      peakRssMB: 0,
      note: String(err).slice(0, 80),
    });
  } finally {
    await rm(storage, { recursive: true, force: true });
  }
  return rows;
}

async function exampleRows(work: string, cli: string): Promise<Measurement[]> {
  const cache = "/var/tmp/rootstock-bench-build/debs";
  await mkdir(cache, { recursive: true });
  const store = join(work, "store");
  const build = [process.execPath, cli, "--store", store, "--quiet", "build", file, "--arch", "x86_64"];
  const args = [...build, "--to", "store:", "--deb-cache", cache];
  const first = await measure("rootstock build examples/mesa (x86_64), fresh store", args);
  const second = await measure("same build again", args);
  const plan = await measure("rootstock plan (dist), no change", [
    process.execPath,
    cli,
    "--store",
    store,
    "--json",
    "plan",
    file,
    "--arch",
    "x86_64",
  ]);
  const kept = (JSON.parse(plan.stdout) as { images: Array<{ action: string }> }).images.filter(
    (i) => i.action === "keep",
  ).length;
  const built = (text: string) => (/(\d+) built/.exec(text) ?? [])[1] ?? "?";
  const { stdout: du } = await exec("du", ["-sb", join(store, "blobs")]);
  return [
    { ...first, bytes: Number(du.split(/\s/)[0]), note: `${built(first.stdout)} built; bytes: store blobs` },
    { ...second, note: `${built(second.stdout)} built` },
    { ...plan, note: `${kept} of 5 kept; goal < 2 s` },
  ];
}

export async function run(): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-build-"));
  try {
    const cli = await compileCli(work);
    const tables = [
      formatTable(
        "build: no-change re-plan of examples/mesa",
        await planRows(work, cli),
        "node, empty script",
      ),
      formatTable(
        "build: a layer from the reference rootfs directory",
        await layerRows(work),
        "encodeLayer zstd:chunked of the tarball",
      ),
    ];
    if (process.env.ROOTSTOCK_BENCH_BUILD_EXAMPLE !== "0") {
      tables.push(formatTable("build: the Mesa example, x86_64", await exampleRows(work, cli)));
    }
    return tables.join("\n");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
