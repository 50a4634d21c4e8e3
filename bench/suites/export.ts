/**
 * Exports of the reference root filesystem against the peer tools: a hardlink
 * directory checkout (goal: within 2x of `ostree checkout -H`), a copying one, and a
 * cpio newc archive against `find | cpio -o -H newc`. Entries come from a manifest
 * prepared before timing (scan + entriesFromTree), with the rootfs itself standing
 * in for the cas (its files already carry their metadata, as bare ostree objects do).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { ExportEntry } from "../../src/export/entry.js";
import { entriesFromTree } from "../../src/export/from-tree.js";
import { scan } from "../../src/tree/index.js";
import { debianRootfsDir } from "../../test/helpers/fixtures.js";
import { formatTable, type Measurement, measure, ourOp } from "../lib.js";

const sh = promisify(execFile);

/** Entries as JSON (xattr values in hex) so the measured process only parses them. */
export function entriesToManifest(entries: ExportEntry[]): string {
  return JSON.stringify(
    entries.map((e) => ({
      ...e,
      xattrs: (e.xattrs ?? []).map(([n, v]) => [n, Buffer.from(v).toString("hex")]),
    })),
  );
}

export function entriesFromManifest(json: string): ExportEntry[] {
  const raw = JSON.parse(json) as Array<Omit<ExportEntry, "xattrs"> & { xattrs: Array<[string, string]> }>;
  return raw.map((e) => ({
    ...e,
    xattrs: e.xattrs.map(([n, v]) => [n, Buffer.from(v, "hex")] as [string, Uint8Array]),
  }));
}

export async function run(): Promise<string> {
  const rootfs = await debianRootfsDir("reference");
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-export-"));
  try {
    const { tree } = await scan(rootfs, { hash: false });
    const entries = entriesFromTree(tree, (path) => ({ kind: "path", path: join(rootfs, path) }));
    const manifest = join(work, "manifest.json");
    await writeFile(manifest, entriesToManifest(entries));
    // ostree cannot commit device nodes: commit a hardlinked copy of the rootfs without them.
    const noDevices = join(work, "nodev");
    await sh("sh", [
      "-c",
      `cp -al ${rootfs} ${noDevices} && find ${noDevices} \\( -type c -o -type b \\) -delete`,
    ]);
    const repo = join(work, "repo");
    await sh("ostree", [`--repo=${repo}`, "init", "--mode=bare"]);
    await sh("ostree", [`--repo=${repo}`, "commit", "--branch=b", `--tree=dir=${noDevices}`]);

    const dir: Measurement[] = [];
    dir.push(
      await measure("ostree checkout -H", `ostree --repo=${repo} checkout -H b ${join(work, "ostree-out")}`),
    );
    dir.push(await measure("cp -al", `cp -al ${rootfs} ${join(work, "cp-al")}`));
    const ours = await measure(
      "rootstock export dir (hardlink)",
      ourOp("export-dir", manifest, join(work, "ours-h"), "hardlink"),
    );
    dir.push({ ...ours, note: `${entries.length} entries` });
    dir.push(await measure("cp -a", `cp -a ${rootfs} ${join(work, "cp-a")}`));
    dir.push(
      await measure(
        "rootstock export dir (copy)",
        ourOp("export-dir", manifest, join(work, "ours-c"), "copy"),
      ),
    );
    const tables = [formatTable("dir export of the reference rootfs", dir, "ostree checkout -H")];

    const cpio: Measurement[] = [];
    const gnu = await measure(
      "find | cpio -o -H newc",
      `cd ${rootfs} && find . | cpio -o --quiet -H newc > ${join(work, "gnu.cpio")}`,
    );
    cpio.push(gnu);
    const ourCpio = await measure("rootstock cpio", ourOp("export-cpio", manifest, join(work, "ours.cpio")));
    cpio.push({ ...ourCpio, bytes: Number(ourCpio.stdout.trim()) });
    tables.push(formatTable("cpio newc of the reference rootfs", cpio, "find | cpio -o -H newc"));
    return tables.join("\n");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
