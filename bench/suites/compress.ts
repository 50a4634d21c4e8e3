/**
 * Layer compression against the peer tools on the reference rootfs tarball (~420 MB):
 * encode with our gzip, zstd and zstd:chunked (default and fast) vs gzip -6, pigz -6,
 * zstd -3 -T0 and skopeo's zstd:chunked; then full decode + verify of our
 * zstd:chunked blob vs `zstd -d | sha256sum`.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, link, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { debianRootfsTar } from "../../test/helpers/fixtures.js";
import { formatTable, type Measurement, measure, ourOp } from "../lib.js";

async function sha256File(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    h.update(c);
    size += c.length;
  }
  return { digest: `sha256:${h.digest("hex")}`, size };
}

/** An OCI layout holding one image whose only layer is the uncompressed tar. */
async function uncompressedLayout(dir: string, tar: string): Promise<void> {
  const blobs = join(dir, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const layer = await sha256File(tar);
  const layerPath = join(blobs, layer.digest.slice(7));
  await link(tar, layerPath).catch(() => copyFile(tar, layerPath));
  const put = async (json: unknown) => {
    const bytes = Buffer.from(JSON.stringify(json));
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    await writeFile(join(blobs, digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const config = await put({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [layer.digest] },
  });
  const manifest = await put({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
  });
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await writeFile(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: { "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
}

async function largestBlob(dir: string): Promise<number> {
  let max = 0;
  for (const f of await readdir(join(dir, "blobs", "sha256")))
    max = Math.max(max, (await stat(join(dir, "blobs", "sha256", f))).size);
  return max;
}

export async function run(): Promise<string> {
  const tar = await debianRootfsTar("reference");
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-compress-"));
  const bytes = (m: Measurement & { stdout: string }): Measurement => ({
    ...m,
    bytes: Number(m.stdout.trim()) || undefined,
  });
  try {
    const enc: Measurement[] = [];
    enc.push(bytes(await measure("gzip -6", `gzip -6 < ${tar} | wc -c`)));
    enc.push(bytes(await measure("pigz -6", `pigz -6 < ${tar} | wc -c`)));
    enc.push(bytes(await measure("zstd -3 -T0", `zstd -q -3 -T0 < ${tar} | wc -c`)));
    enc.push(
      bytes(await measure("rootstock gzip", ourOp("compress-encode", tar, join(work, "o.gz"), "gzip"))),
    );
    enc.push(
      bytes(await measure("rootstock zstd", ourOp("compress-encode", tar, join(work, "o.zst"), "zstd"))),
    );
    const chunked = join(work, "o.chunked");
    enc.push(
      bytes(
        await measure(
          "rootstock zstd:chunked (default)",
          ourOp("compress-encode", tar, chunked, "zstd:chunked"),
        ),
      ),
    );
    enc.push(
      bytes(
        await measure(
          "rootstock zstd:chunked (fast)",
          ourOp("compress-encode", tar, join(work, "o.fast"), "zstd:chunked", "fast"),
        ),
      ),
    );
    enc.push(
      bytes(
        await measure(
          "rootstock zstd:chunked (§5 chunks)",
          ourOp("compress-encode", tar, join(work, "o.rollsum"), "zstd:chunked", "rollsum"),
        ),
      ),
    );
    const src = join(work, "oci-src");
    await uncompressedLayout(src, tar);
    await rm("/var/lib/containers/cache/blob-info-cache-v1.boltdb", { force: true });
    const dst = join(work, "oci-dst");
    const sk = await measure(
      "skopeo copy zstd:chunked",
      `skopeo copy -q --dest-compress-format zstd:chunked oci:${src}:latest oci:${dst}:latest`,
    );
    enc.push({ ...sk, bytes: await largestBlob(dst), note: "oci → oci, gen-A writer" });
    for (const f of ["o.gz", "o.zst", "o.fast", "o.rollsum"]) await rm(join(work, f), { force: true });
    await rm(dst, { recursive: true, force: true });

    const dec: Measurement[] = [];
    dec.push(
      bytes(
        await measure("zstd -d, sha256sum", `zstd -q -d -c < ${chunked} | sha256sum && stat -c %s ${tar}`),
      ),
    );
    dec.push({
      ...bytes(await measure("rootstock decode + verify (stream)", ourOp("compress-decode", chunked))),
      note: "blob digest + diff_id",
    });
    dec.push({
      ...bytes(await measure("rootstock verify via TOC", ourOp("compress-decode", chunked, "toc"))),
      note: "TOC, tar-split, every file, rebuilt tar",
    });
    return [
      formatTable(
        `encode the reference rootfs tar (${(await stat(tar)).size.toLocaleString("en-US")} bytes)`,
        enc,
        "zstd -3 -T0",
      ),
      formatTable("decode + verify our zstd:chunked blob", dec, "zstd -d, sha256sum"),
    ].join("\n");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
