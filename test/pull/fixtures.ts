/**
 * Growing Debian root filesystems for the pull tests and bench: image 0 is
 * `mmdebstrap --variant=essential bookworm`, image i adds the first i packages of
 * GROWING_PACKAGES (small ones). Built once and cached next to the other fixtures
 * (never committed); .debs are cached so a rebuild does not download again.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileRangeReader, readChunkedMetadata } from "../../src/compress/chunked-reader.js";
import { SKIPPABLE_HEADER_SIZE } from "../../src/compress/footer.js";
import { fileRanges } from "../../src/compress/toc.js";
import { readImage } from "../../src/layout/image.js";
import { OciLayout } from "../../src/layout/layout.js";
import type { Digest } from "../../src/oci/digest.js";
import { FIXTURE_DIR, withLock } from "../helpers/fixtures.js";

const run = promisify(execFile);

/** Small bookworm packages, added one per image. */
export const GROWING_PACKAGES = ["hello", "less", "file", "nano", "bc", "tree", "jq", "vim-tiny", "strace"];

/** Path of the tarball of growing image `index` (0 = essential, i = + i packages). */
export async function growingDebianTar(index: number): Promise<string> {
  if (!Number.isInteger(index) || index < 0 || index > GROWING_PACKAGES.length)
    throw new Error(`growing image ${index}: 0..${GROWING_PACKAGES.length}`);
  const target = join(FIXTURE_DIR, `debian-growing-${index}.tar`);
  if (existsSync(target)) return target;
  return withLock(`debian-growing-${index}`, async () => {
    if (existsSync(target)) return target;
    const debCache = join(FIXTURE_DIR, "apt-archives-pull");
    if (!existsSync(debCache)) {
      await mkdir(debCache, { recursive: true });
      const shared = join(FIXTURE_DIR, "apt-archives-bookworm-amd64");
      if (existsSync(shared)) await cp(shared, debCache, { recursive: true, force: false });
    }
    const partial = `${target}.partial`;
    await rm(partial, { force: true });
    const include = GROWING_PACKAGES.slice(0, index);
    await run(
      "mmdebstrap",
      [
        "--quiet",
        "--mode=root",
        "--format=tar",
        "--variant=essential",
        ...(include.length > 0 ? [`--include=${include.join(",")}`] : []),
        "--skip=essential/unlink",
        `--setup-hook=mkdir -p "$1/var/cache/apt/archives/"`,
        `--setup-hook=sync-in ${debCache} /var/cache/apt/archives/`,
        `--customize-hook=sync-out /var/cache/apt/archives ${debCache}`,
        "bookworm",
        partial,
      ],
      { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" } },
    );
    await rename(partial, target);
    return target;
  });
}

/**
 * An OCI layout holding growing images 0..count-1 as one-layer zstd:chunked
 * images tagged `g0`, `g1`, …, encoded once and cached (encoding 140 MB takes a
 * while on a shared machine). `legacyAnnotations` adds the io.containers.* keys
 * podman 4.3 needs for partial pulls.
 */
export async function growingLayout(
  count: number,
  opts: { legacyAnnotations?: boolean } = {},
): Promise<string> {
  const name = `pull-growing-layout${opts.legacyAnnotations ? "-legacy" : ""}`;
  const path = join(FIXTURE_DIR, name);
  const tars: string[] = [];
  for (let i = 0; i < count; i++) tars.push(await growingDebianTar(i));
  return withLock(name, async () => {
    const { openEndpoint } = await import("../../src/image/endpoint.js");
    const { assembleImage, hostPlatform, writeImage } = await import("../../src/image/assemble.js");
    const { encodeLayer } = await import("../../src/compress/layer.js");
    const { readFileChunks } = await import("../../src/tar/index.js");
    const { parseReference } = await import("../../src/oci/reference.js");
    for (let i = 0; i < count; i++) {
      const marker = join(path, `.g${i}.complete`);
      if (existsSync(marker)) continue;
      const ref = parseReference(`oci:${path}:g${i}`);
      const dest = await openEndpoint(ref, { storeDir: join(path, ".unused"), create: true });
      const { blob, result } = encodeLayer(readFileChunks(tars[i] as string), {
        compression: "zstd:chunked",
        legacyAnnotations: opts.legacyAnnotations === true,
      });
      result.catch(() => {});
      await dest.put(blob);
      const layer = await result;
      const image = assembleImage({
        platform: hostPlatform(),
        layers: [layer],
        created: "2023-11-14T22:13:20Z",
      });
      await writeImage(dest, image, `g${i}`);
      await dest.close();
      await (await open(marker, "w")).close();
    }
    return path;
  });
}

/** An OCI layout holding the reference rootfs as one zstd:chunked layer (legacy keys too), tag `ref`. */
export async function referenceLayout(): Promise<string> {
  const { debianRootfsTar } = await import("../helpers/fixtures.js");
  const tar = await debianRootfsTar("reference");
  const path = join(FIXTURE_DIR, "pull-reference-layout");
  return withLock("pull-reference-layout", async () => {
    const marker = join(path, ".ref.complete");
    if (existsSync(marker)) return path;
    const { openEndpoint } = await import("../../src/image/endpoint.js");
    const { assembleImage, hostPlatform, writeImage } = await import("../../src/image/assemble.js");
    const { encodeLayer } = await import("../../src/compress/layer.js");
    const { readFileChunks } = await import("../../src/tar/index.js");
    const { parseReference } = await import("../../src/oci/reference.js");
    const dest = await openEndpoint(parseReference(`oci:${path}:ref`), {
      storeDir: join(path, ".unused"),
      create: true,
    });
    const { blob, result } = encodeLayer(readFileChunks(tar), {
      compression: "zstd:chunked",
      legacyAnnotations: true,
    });
    result.catch(() => {});
    await dest.put(blob);
    const layer = await result;
    await writeImage(
      dest,
      assembleImage({ platform: hostPlatform(), layers: [layer], created: "2023-11-14T22:13:20Z" }),
      "ref",
    );
    await dest.close();
    await (await open(marker, "w")).close();
    return path;
  });
}

export interface LayerFacts {
  digest: Digest;
  /** Every file content: digest → [uncompressed size, compressed bytes of its non-zero frames]. */
  files: Map<Digest, [number, number]>;
  metadataBytes: number;
}

/** What each image's layer holds, read straight from the layout blob with the compress reader. */
export async function layerFacts(layoutPath: string, tag: string): Promise<LayerFacts> {
  const layout = await OciLayout.open(layoutPath);
  const image = await readImage(layout, await layout.resolve(tag));
  const layer = image.manifest.layers[0]!;
  const reader = await fileRangeReader(layout.blobPath(layer.digest));
  try {
    const meta = await readChunkedMetadata(reader.read, layer);
    if (!meta?.tarSplit) throw new Error(`${tag}: not a generation-E zstd:chunked layer`);
    const files = new Map<Digest, [number, number]>();
    for (const f of fileRanges(meta.toc, meta.positions.tocOffset - SKIPPABLE_HEADER_SIZE)) {
      let compressed = 0;
      for (const r of f.ranges) if (!r.zeros) compressed += r.end - r.start;
      files.set(f.entry.digest as Digest, [f.entry.size ?? 0, compressed]);
    }
    const ts = meta.positions.tarSplit!;
    return { digest: layer.digest, files, metadataBytes: ts.offset + ts.length - meta.positions.tocOffset };
  } finally {
    await reader.close();
  }
}
