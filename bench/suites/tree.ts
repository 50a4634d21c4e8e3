/**
 * The tree module against the plain tools on the reference rootfs (~420 MB): a scan
 * with every file hashed (tree digest) next to `tar -c` of the same directory and
 * `sha256sum` of every file; writing the whole tree as a reproducible layer tar next
 * to GNU tar writing the same directory.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { debianRootfsDir, debianRootfsTar } from "../../test/helpers/fixtures.js";
import { formatTable, type Measurement, measure, ourOp } from "../lib.js";

export async function run(): Promise<string> {
  const rootfs = await debianRootfsDir("reference");
  const rootfsTar = await debianRootfsTar("reference");
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-tree-"));
  const withBytes = (m: Measurement & { stdout: string }): Measurement => ({
    ...m,
    bytes: Number(m.stdout.trim().split("\n").pop()) || undefined,
  });
  try {
    // Warm the page cache once so every row reads from memory.
    await measure("warm-up", `tar -cf - -C ${rootfs} . | cat >/dev/null`);
    const scanRows: Measurement[] = [
      await measure("tar -c to a pipe", `tar -cf - -C ${rootfs} . | cat >/dev/null`),
      await measure(
        "sha256sum of every file (2 procs)",
        `find ${rootfs} -type f -print0 | xargs -0 -P2 sha256sum >/dev/null`,
      ),
      withBytes(await measure("rootstock scan (no hash)", ourOp("tree-scan", rootfs, "--no-hash"))),
      withBytes(await measure("rootstock scan + hash + tree digest", ourOp("tree-scan", rootfs))),
    ];
    const tarRows: Measurement[] = [
      await measure("sha256sum of the tar", `sha256sum ${rootfsTar} >/dev/null`),
      withBytes(await measure("rootstock tree digest of the tar", ourOp("tree-digest-tar", rootfsTar))),
    ];
    const layerRows: Measurement[] = [
      await measure(
        "GNU tar -c --xattrs --numeric-owner",
        `tar --xattrs --xattrs-include='*' --numeric-owner --sort=name -cf ${join(work, "gnu.tar")} -C ${rootfs} .`,
      ),
      withBytes(
        await measure(
          "rootstock scan + reproducible layer",
          ourOp("tree-layer", rootfs, join(work, "ours.tar")),
        ),
      ),
    ];
    return [
      formatTable("tree: scan and hash the reference rootfs", scanRows, "tar -c to a pipe"),
      formatTable("tree: tree digest of mmdebstrap's tar (streaming)", tarRows, "sha256sum of the tar"),
      formatTable("tree: whole rootfs as one layer tar", layerRows, "GNU tar -c --xattrs --numeric-owner"),
    ].join("\n");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
