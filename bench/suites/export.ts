/**
 * `npm run bench -- export` (and the export half of `pull-export`): exports of the
 * reference root filesystem as an image in the store, next to the peer tools.
 *
 * - dir: `rootstock export` hardlinking from the farm (the common path: the image
 *   was exported before, so its layer has a record and the farm holds its objects)
 *   vs `ostree checkout -H` (goal: within 2x), `podman export | tar -x`, `umoci
 *   unpack` (gzip layout), `cp -al`; the first export (explode + farm) and `--copy`
 *   shown for what they cost, and `ostree checkout -H --fsync=true` for the cost of
 *   durability (ours flushes the filesystem before an export counts as done; ostree
 *   fsyncs only when asked).
 * - tar: `rootstock export --format tar` vs `tar -c` of the rootfs directory
 *   (goal: within 1.3x); tar.zst vs `tar -c | zstd -3 -T0`; cpio vs GNU cpio.
 *
 * Our side is the CLI as users run it (bin/rootstock.js on the compiled dist/). Rows
 * with a goal run in three alternating rounds and report the median (measureRounds).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { openEndpoint } from "../../src/image/endpoint.js";
import { importTarball } from "../../src/image/import.js";
import { parseReference } from "../../src/oci/reference.js";
import { debianRootfsDir, debianRootfsTar } from "../../test/helpers/fixtures.js";
import { podmanSandbox } from "../../test/helpers/podman.js";
import { formatTable, type Measurement, measure, measureRounds, ourCli } from "../lib.js";

const sh = promisify(execFile);

export async function run(): Promise<string> {
  const rootfs = await debianRootfsDir("reference");
  const rootfsTar = await debianRootfsTar("reference");
  // Lowercase: podman names an image pulled from oci:PATH after the path.
  const work = `/var/tmp/rootstock-bench-export-${randomBytes(6).toString("hex")}`;
  await mkdir(work);
  const store = join(work, "store");
  const ref = "store:ref:bench";
  const tables: string[] = [];
  try {
    // ---- setup, untimed -----------------------------------------------------------
    const dest = await openEndpoint(parseReference(ref), { storeDir: store });
    const imported = await importTarball(rootfsTar, dest, "bench");
    await dest.close();
    const cli = (...args: string[]) => {
      const [node, ...rest] = ourCli(...args);
      return sh(node as string, rest, { maxBuffer: 1 << 20 });
    };
    await cli("--store", store, "-q", "copy", ref, `oci:${join(work, "layout")}:ref`);
    await cli("--store", store, "-q", "copy", "--compression", "gzip", ref, `oci:${join(work, "gzip")}:ref`);
    const ours = (format: string, output: string, ...extra: string[]) =>
      ourCli("--store", store, "-q", "export", ref, "--format", format, "-o", output, ...extra);
    // ostree cannot commit device nodes: commit a hardlinked copy of the rootfs without them.
    const noDevices = join(work, "nodev");
    await sh("sh", [
      "-c",
      `cp -al ${rootfs} ${noDevices} && find ${noDevices} \\( -type c -o -type b \\) -delete`,
    ]);
    const repo = join(work, "repo");
    await sh("ostree", [`--repo=${repo}`, "init", "--mode=bare"]);
    await sh("ostree", [`--repo=${repo}`, "commit", "--branch=b", `--tree=dir=${noDevices}`]);
    const pm = await podmanSandbox({ dir: join(work, "podman") });
    const pulled = await pm.run("pull", "-q", `oci:${join(work, "layout")}:ref`);
    const imageId = pulled.stdout.trim().split("\n").pop()!;
    const container = (await pm.run("create", imageId, "true")).stdout.trim();

    // ---- dir ----------------------------------------------------------------------
    const out = (name: string) => join(work, "out", name);
    await mkdir(join(work, "out"));
    const dir: Measurement[] = [];
    const first = await measure("rootstock export dir, first (explode + farm)", ours("dir", out("first")));
    dir.push({ ...first, note: "once per image: layer exploded into the store, farm objects made" });
    dir.push(
      ...(await measureRounds([
        {
          label: "ostree checkout -H",
          run: (r) => measure("ostree", `ostree --repo=${repo} checkout -H b ${out(`ostree-${r}`)}`),
        },
        {
          label: "rootstock export dir (hardlink)",
          run: async (r) => ({
            ...(await measure("ours", ours("dir", out(`ours-b-${r}`)))),
            note: `${imported.inventory.files} files, farm reused`,
          }),
        },
        { label: "cp -al", run: (r) => measure("cp -al", `cp -al ${rootfs} ${out(`cp-al-${r}`)}`) },
        {
          // Ours flushes the filesystem before the export counts as done (durable by
          // default); ostree fsyncs only when asked. Shown for that comparison only.
          label: "ostree checkout -H --fsync=true",
          run: (r) =>
            measure(
              "ostree fsync",
              `ostree --repo=${repo} checkout -H --fsync=true b ${out(`ostree-fsync-${r}`)}`,
            ),
        },
      ])),
    );
    dir.push(
      await measure(
        "podman export | tar -x",
        `mkdir ${out("podman")} && ${pm.command} export ${container} | tar -x -C ${out("podman")}`,
        { env: pm.env },
      ),
    );
    dir.push(
      await measure("umoci unpack (gzip)", `umoci unpack --image ${join(work, "gzip")}:ref ${out("umoci")}`),
    );
    dir.push(await measure("rootstock export dir --copy", ours("dir", out("ours-copy"), "--copy")));
    tables.push(formatTable("dir export of the reference rootfs image", dir, "ostree checkout -H"));

    // The outputs are the image: every export has its tree digest.
    const digest = async (p: string) => (await cli("-q", "digest", p)).stdout.trim();
    const checks: string[] = [];
    const check = async (name: string) =>
      checks.push(
        `${name}: ${(await digest(out(name))) === imported.treeDigest ? "same tree digest" : "DIFFERENT tree digest"}`,
      );
    for (const name of ["ours-b-0", "ours-copy", "podman"]) await check(name);

    // ---- archives -------------------------------------------------------------------
    // Each archive is checked (ours, first round) and deleted before the next row runs,
    // and the rows alternate over rounds (measureRounds): every row writes into memory
    // in the same state.
    const row = (label: string, cmd: (output: string) => string[] | string, name: string, ours: boolean) => ({
      label,
      run: async (round: number): Promise<Measurement> => {
        const output = out(name);
        const m = await measure(label, cmd(output));
        const measured = { ...m, bytes: (await stat(output)).size };
        if (ours && round === 0) await check(name);
        await rm(output, { force: true });
        return measured;
      },
    });
    const arc = await measureRounds([
      row("tar -c", (o) => `tar -C ${rootfs} -c . > ${o}`, "gnu.tar", false),
      row("rootstock export tar", (o) => ours("tar", o), "ours.tar", true),
      row(
        "tar -c | zstd -3 -T0",
        (o) => `tar -C ${rootfs} -c . | zstd -q -3 -T0 > ${o}`,
        "gnu.tar.zst",
        false,
      ),
      row("rootstock export tar.zst", (o) => ours("tar.zst", o), "ours.tar.zst", true),
      row(
        "find | cpio -o -H newc",
        (o) => `cd ${rootfs} && find . | cpio -o --quiet -H newc > ${o}`,
        "gnu.cpio",
        false,
      ),
      row("rootstock export cpio", (o) => ours("cpio", o), "ours.cpio", true),
    ]);
    tables.push(formatTable("archive export of the reference rootfs image", arc, "tar -c"));

    tables.push(`\nimage tree digest ${imported.treeDigest}; ${checks.join("; ")}`);
    await pm.run("rm", container).catch(() => {});
    await pm.run("system", "reset", "-f").catch(() => {});
    return tables.join("\n");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
