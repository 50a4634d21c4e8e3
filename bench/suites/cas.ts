/**
 * Content store and OCI layout I/O against the plain tools: ingesting a 420 MB
 * layer blob, copying an image between layouts (skopeo), adding a root
 * filesystem's files as deduplicated file objects, and re-verifying the store.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContentStore } from "../../src/cas/store.js";
import { OciLayout } from "../../src/layout/layout.js";
import { canonicalJson, descriptorFor } from "../../src/oci/canonical.js";
import { sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import { debianRootfsDir, debianRootfsTar } from "../../test/helpers/fixtures.js";
import { formatTable, type Measurement, measure, ourOp } from "../lib.js";

async function fileDigest(path: string) {
  const { Digester } = await import("../../src/oci/digest.js");
  const d = new Digester();
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>)
    d.update(chunk);
  return { digest: d.digest(), size: d.size };
}

export async function run(): Promise<string> {
  const tar = await debianRootfsTar("reference");
  const rootfs = await debianRootfsDir("reference");
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-cas-"));
  try {
    const tables: string[] = [];
    const withBytes = (m: Measurement & { stdout: string }): Measurement => ({
      ...m,
      bytes: Number(m.stdout.trim()) || undefined,
    });

    // 1. One 420 MB blob: hash while streaming, fsync, commit.
    const put: Measurement[] = [];
    put.push(withBytes(await measure("rootstock cas put", ourOp("cas-put", join(work, "s1"), tar))));
    put.push(
      await measure(
        "sha256sum + cp + sync",
        `sha256sum ${tar} >/dev/null && cp ${tar} ${join(work, "copy.tar")} && sync -f ${join(work, "copy.tar")}`,
      ),
    );
    tables.push(formatTable("ingest a 420 MB layer blob", put, "sha256sum + cp + sync"));

    // 2. Image copy between OCI layouts (uncompressed 420 MB layer).
    const src = join(work, "src");
    const layout = await OciLayout.open(src, { create: true });
    const layer = await fileDigest(tar);
    const layerDesc = { mediaType: MediaType.OciLayer, ...layer };
    await layout.put(createReadStream(tar), layerDesc);
    const config = canonicalJson({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [layer.digest] },
    });
    const configDesc = descriptorFor(MediaType.OciConfig, config);
    await layout.put(config, configDesc);
    const manifest = canonicalJson({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: [layerDesc],
    });
    const manifestDesc = descriptorFor(MediaType.OciManifest, manifest);
    await layout.put(manifest, manifestDesc);
    await layout.setTag("v1", manifestDesc);
    void sha256;
    const copy: Measurement[] = [];
    copy.push(
      withBytes(await measure("rootstock layout copy", ourOp("layout-copy", src, "v1", join(work, "dst1")))),
    );
    copy.push(
      withBytes(
        await measure(
          "rootstock layout copy --link",
          ourOp("layout-copy", src, "v1", join(work, "dst3"), "link"),
        ),
      ),
    );
    copy.push(
      await measure(
        "skopeo copy oci: → oci:",
        `skopeo copy --quiet oci:${src}:v1 oci:${join(work, "dst2")}:v1`,
      ),
    );
    tables.push(formatTable("copy a one-layer image between OCI layouts", copy, "skopeo copy oci: → oci:"));

    // 3. A root filesystem's files as file objects (dedup by content), then fsck.
    const files: Measurement[] = [];
    const store = join(work, "files");
    files.push(
      withBytes(
        await measure(
          "rootstock import files (fsync each)",
          ourOp("cas-import-tree", join(work, "fsync"), rootfs),
        ),
      ),
    );
    await rm(join(work, "fsync"), { recursive: true, force: true });
    files.push(
      withBytes(
        await measure("rootstock import files (batch)", ourOp("cas-import-tree", store, rootfs, "batch")),
      ),
    );
    files.push(withBytes(await measure("rootstock fsck (re-hash all)", ourOp("cas-fsck", store))));
    files.push(
      await measure(
        "find | sha256sum (files only)",
        `find ${join(store, "files")} -type f -print0 | xargs -0 -P2 sha256sum >/dev/null`,
      ),
    );
    files.push(await measure("cp -a rootfs", `cp -a ${rootfs} ${join(work, "cp-a")}`));
    const usage = await (await import("../../src/cas/du.js")).du(await ContentStore.open(store));
    tables.push(
      formatTable(
        `file objects from the reference rootfs (${usage.files.count} unique files, ${usage.files.bytes.toLocaleString("en-US")} bytes)`,
        files,
        "cp -a rootfs",
      ),
    );
    return tables.join("\n");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
