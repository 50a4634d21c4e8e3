/**
 * remote: push and pull of the reference root filesystem image (~420 MB tar, one
 * layer) to and from a docker-registry on 127.0.0.1, ours (`rootstock copy`) next to
 * `skopeo copy` of the same OCI layout, same compression (the layer is copied as is).
 * Every push goes to a fresh repository so nothing is skipped; skopeo's blob-info
 * cache is deleted before each of its runs (peers.md: it would reuse blobs).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { debianRootfsTar } from "../../test/helpers/fixtures.js";
import { startRegistry } from "../../test/helpers/registry.js";
import { formatTable, type Measurement, measure } from "../lib.js";

const BIN = fileURLToPath(new URL("../../bin/rootstock.js", import.meta.url));
const SKOPEO_CACHE = "/var/lib/containers/cache/blob-info-cache-v1.boltdb";
const rootstock = (...args: string[]) => [process.execPath, BIN, "-q", ...args];

export async function run(): Promise<string> {
  const tarball = await debianRootfsTar("reference");
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-remote-"));
  const reg = await startRegistry();
  const tables: string[] = [];
  try {
    for (const compression of ["gzip", "zstd:chunked"] as const) {
      const layout = join(work, `src-${compression.replace(":", "-")}`);
      await measure(
        "prepare",
        rootstock("import", "--compression", compression, tarball, `oci:${layout}:img`),
      );
      const rows: Measurement[] = [];
      const tag = compression.replace(":", "-");
      const ours = `${reg.host}/ours-${tag}/img:1`;
      const theirs = `${reg.host}/skopeo-${tag}/img:1`;
      rows.push(
        await measure(
          "rootstock copy oci: → registry",
          rootstock("copy", `oci:${layout}:img`, `docker://${ours}`),
        ),
      );
      await rm(SKOPEO_CACHE, { force: true });
      rows.push(
        await measure(
          "skopeo copy oci: → registry",
          `skopeo copy -q --dest-tls-verify=false oci:${layout}:img docker://${theirs}`,
        ),
      );
      rows.push(
        await measure(
          "rootstock copy registry → oci:",
          rootstock("copy", `docker://${ours}`, `oci:${join(work, `ours-${tag}`)}:img`),
        ),
      );
      await rm(SKOPEO_CACHE, { force: true });
      rows.push(
        await measure(
          "skopeo copy registry → oci:",
          `skopeo copy -q --src-tls-verify=false docker://${theirs} oci:${join(work, `skopeo-${tag}`)}:img`,
        ),
      );
      tables.push(
        formatTable(`remote: ${compression} image of the reference rootfs, loopback registry`, rows),
      );
    }
    return tables.join("\n");
  } finally {
    await reg.stop();
    await rm(work, { recursive: true, force: true });
  }
}
