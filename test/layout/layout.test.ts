import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { gunzipSync, gzipSync } from "node:zlib";
import { ContentStore } from "../../src/cas/store.js";
import { isRootstockError } from "../../src/errors.js";
import { copyGraph, readImage } from "../../src/layout/image.js";
import { OciLayout, REF_NAME_ANNOTATION, resolveLayoutReference } from "../../src/layout/layout.js";
import type { BlobSource } from "../../src/oci/blobs.js";
import { canonicalJson, descriptorFor } from "../../src/oci/canonical.js";
import { sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import { parsePlatform } from "../../src/oci/platform.js";
import { parseReference } from "../../src/oci/reference.js";
import { parseManifest } from "../../src/oci/types.js";
import { repositoryConformance } from "../cas/conformance.js";
import { hasCommand } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);

repositoryConformance("layout", async () => {
  const dir = await mkdtemp(join(tmpdir(), "rootstock-layout-"));
  const layout = await OciLayout.open(join(dir, "l"), { create: true });
  return {
    repo: layout,
    blobPath: (d) => layout.blobPath(d),
    ingestFiles: async () => {
      const { readdir } = await import("node:fs/promises");
      return readdir(join(dir, "l", ".rootstock", "ingest")).catch(() => []);
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

/** A one-layer image: a real tar made by GNU tar, gzip'ed, with a config naming its diff_id. */
async function writeTinyImage(layout: OciLayout, dir: string, tag: string) {
  const root = join(dir, "rootfs");
  await mkdir(join(root, "etc"), { recursive: true });
  await writeFile(join(root, "etc", "hello"), `hello from ${tag}\n`);
  const tarPath = join(dir, "layer.tar");
  await run("tar", [
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "-cf",
    tarPath,
    "-C",
    root,
    ".",
  ]);
  const tar = await readFile(tarPath);
  const layer = gzipSync(tar);
  const layerDesc = descriptorFor(MediaType.OciLayerGzip, layer);
  const config = canonicalJson({
    created: "2024-01-01T00:00:00Z",
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/bin:/bin"], Cmd: ["/bin/sh"], WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: [sha256(tar)] },
    history: [{ created: "2024-01-01T00:00:00Z", created_by: "rootstock test" }],
  });
  const configDesc = descriptorFor(MediaType.OciConfig, config);
  const manifest = canonicalJson({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configDesc,
    layers: [layerDesc],
  });
  const manifestDesc = descriptorFor(MediaType.OciManifest, manifest);
  await layout.put(layer, layerDesc);
  await layout.put(config, configDesc);
  await layout.put(manifest, manifestDesc);
  await layout.setTag(tag, manifestDesc);
  return { tar, layerDesc, configDesc, manifestDesc };
}

test("a new layout has oci-layout and an empty index; tags are added, replaced, resolved, removed", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(OciLayout.open(join(dir, "l")), (e: unknown) => isRootstockError(e, "NOT_FOUND"));
    const layout = await OciLayout.open(join(dir, "l"), { create: true });
    assert.equal(await readFile(join(dir, "l", "oci-layout"), "utf8"), '{"imageLayoutVersion":"1.0.0"}');
    assert.deepEqual(JSON.parse(await readFile(join(dir, "l", "index.json"), "utf8")), {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [],
    });
    await assert.rejects(layout.resolve(), /holds no image/);
    const a = await writeTinyImage(layout, dir, "a");
    assert.equal((await layout.resolve()).digest, a.manifestDesc.digest, "the only image needs no tag");
    const b = await writeTinyImage(layout, join(dir, "b"), "b");
    await assert.rejects(layout.resolve(), /2 images; name one of the tags: a, b/);
    await layout.setTag("a", b.manifestDesc);
    const index = await layout.readIndex();
    assert.deepEqual(
      index.manifests.map((d) => [d.annotations?.[REF_NAME_ANNOTATION], d.digest]),
      [
        ["b", b.manifestDesc.digest],
        ["a", b.manifestDesc.digest],
      ],
    );
    await assert.rejects(layout.resolve("zz"), /no tag "zz"; tags: a, b/);
    assert.equal(await layout.deleteTag("a"), true);
    assert.deepEqual(await layout.tags(), ["b"]);
    const { descriptor } = await resolveLayoutReference(
      parseReference(`oci:${join(dir, "l")}:b`) as { transport: "oci"; path: string; tag?: string },
    );
    assert.equal(descriptor.digest, b.manifestDesc.digest);
  });
});

test("concurrent tagging from one process loses no update", async () => {
  await withTempDir(async (dir) => {
    const layout = await OciLayout.open(join(dir, "l"), { create: true });
    const { manifestDesc } = await writeTinyImage(layout, dir, "base");
    await Promise.all(Array.from({ length: 12 }, (_, i) => layout.setTag(`t${i}`, manifestDesc)));
    assert.equal((await layout.tags()).length, 13);
  });
});

test("skopeo reads the layout we write, and we read the layout skopeo writes", {
  timeout: 120_000,
}, async (t) => {
  if (!(await hasCommand("skopeo"))) return t.skip("skopeo not installed");
  await withTempDir(async (dir) => {
    const ours = join(dir, "ours");
    const layout = await OciLayout.open(ours, { create: true });
    const img = await writeTinyImage(layout, dir, "v1");

    const { stdout } = await run("skopeo", ["inspect", `oci:${ours}:v1`]);
    const inspected = JSON.parse(stdout) as {
      Digest: string;
      Layers: string[];
      Architecture: string;
      Env: string[];
    };
    assert.equal(inspected.Digest, img.manifestDesc.digest);
    assert.deepEqual(inspected.Layers, [img.layerDesc.digest]);
    assert.equal(inspected.Architecture, "amd64");
    assert.deepEqual(inspected.Env, ["PATH=/usr/bin:/bin"]);

    const theirs = join(dir, "theirs");
    await run("skopeo", ["copy", "--quiet", `oci:${ours}:v1`, `oci:${theirs}:copied`]);
    const copy = await OciLayout.open(theirs);
    const desc = await copy.resolve("copied");
    const image = await readImage(copy, desc, parsePlatform("linux/amd64"));
    assert.deepEqual(image.config.rootfs.diff_ids, [sha256(img.tar)]);
    const layer = Buffer.from(await copy.read(image.manifest.layers[0]!, 1 << 20));
    assert.equal(sha256(gunzipSync(layer)), image.config.rootfs.diff_ids[0]);

    if (await hasCommand("umoci")) {
      const bundle = join(dir, "bundle");
      await run("umoci", ["unpack", "--rootless", "--image", `${ours}:v1`, bundle]);
      assert.equal(await readFile(join(bundle, "rootfs", "etc", "hello"), "utf8"), "hello from v1\n");
    }
  });
});

test("images move between the store and a layout through the shared interfaces", async () => {
  await withTempDir(async (dir) => {
    const layout = await OciLayout.open(join(dir, "l"), { create: true });
    const img = await writeTinyImage(layout, dir, "v1");
    const store = await ContentStore.open(join(dir, "store"));
    const repo = store.repository("tiny");
    const first = await store.withLease(async () => {
      const r = await copyGraph(layout, repo, await layout.resolve("v1"));
      await repo.setTag("v1", img.manifestDesc);
      return r;
    });
    assert.deepEqual([first.copied, first.skipped], [3, 0]);
    const again = await copyGraph(layout, repo, img.manifestDesc);
    assert.deepEqual([again.copied, again.skipped], [0, 3]);
    const back = await OciLayout.open(join(dir, "back"), { create: true });
    await copyGraph(repo, back, await repo.resolve("v1"));
    await back.setTag("v1", img.manifestDesc);
    const image = await readImage(back, await back.resolve("v1"));
    assert.equal(image.manifest.layers[0]?.digest, img.layerDesc.digest);
  });
});

test("bad layouts fail with one-line errors naming what is wrong", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "l");
    const layout = await OciLayout.open(path, { create: true });
    const img = await writeTinyImage(layout, dir, "v1");
    const indexPath = join(path, "index.json");
    const good = await readFile(indexPath, "utf8");

    const broken = JSON.parse(good);
    broken.manifests[0].size = "big";
    await writeFile(indexPath, JSON.stringify(broken));
    await assert.rejects(layout.resolve("v1"), (e: unknown) => {
      assert.ok(isRootstockError(e, "INVALID_FORMAT"));
      assert.match(
        e.message,
        /index\.json: manifests\[0\]\.size: Invalid input: expected number, received string$/,
      );
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    await writeFile(indexPath, "{");
    await assert.rejects(layout.tags(), /index\.json: not valid JSON/);
    await writeFile(indexPath, good);

    // A blob whose bytes do not match its digest.
    const { chmod } = await import("node:fs/promises");
    await chmod(layout.blobPath(img.configDesc.digest), 0o644);
    await writeFile(layout.blobPath(img.configDesc.digest), "{}");
    await assert.rejects(readImage(layout, await layout.resolve("v1")), (e: unknown) =>
      isRootstockError(e, "SIZE_MISMATCH", "DIGEST_MISMATCH"),
    );
    const sameSize = Buffer.alloc(img.configDesc.size, 32);
    await writeFile(layout.blobPath(img.configDesc.digest), sameSize);
    await assert.rejects(
      readImage(layout, await layout.resolve("v1")),
      (e: unknown) => isRootstockError(e, "DIGEST_MISMATCH") && e.message.includes(img.configDesc.digest),
    );
    // A missing blob.
    await rm(layout.blobPath(img.layerDesc.digest), { force: true });
    await assert.rejects(
      layout.open(img.layerDesc),
      (e: unknown) => isRootstockError(e, "NOT_FOUND") && e.message.includes(img.layerDesc.digest),
    );
    // An unknown layout version.
    await writeFile(join(path, "oci-layout"), '{"imageLayoutVersion":"2.0.0"}');
    await assert.rejects(OciLayout.open(path), /imageLayoutVersion: unsupported version "2.0.0"/);
    // Manifests read from a layout are validated.
    assert.equal(parseManifest(await layout.read(img.manifestDesc)).layers.length, 1);
  });
});

test("a multi-platform index: readImage picks by platform, skopeo copies it with --all", {
  timeout: 120_000,
}, async (t) => {
  await withTempDir(async (dir) => {
    const layout = await OciLayout.open(join(dir, "l"), { create: true });
    const amd = await writeTinyImage(layout, join(dir, "amd"), "amd64-only");
    // A second image whose config says arm64.
    const armConfig = canonicalJson({
      architecture: "arm64",
      variant: "v8",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [sha256(amd.tar)] },
    });
    const armConfigDesc = descriptorFor(MediaType.OciConfig, armConfig);
    await layout.put(armConfig, armConfigDesc);
    const armManifest = canonicalJson({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: armConfigDesc,
      layers: [amd.layerDesc],
    });
    const armDesc = descriptorFor(MediaType.OciManifest, armManifest);
    await layout.put(armManifest, armDesc);
    const index = canonicalJson({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...amd.manifestDesc, platform: { architecture: "amd64", os: "linux" } },
        { ...armDesc, platform: { architecture: "arm64", os: "linux", variant: "v8" } },
      ],
    });
    const indexDesc = descriptorFor(MediaType.OciIndex, index);
    await layout.put(index, indexDesc);
    await layout.setTag("multi", indexDesc);

    const arm = await readImage(layout, await layout.resolve("multi"), parsePlatform("linux/aarch64"));
    assert.equal(arm.descriptor.digest, armDesc.digest);
    assert.equal(arm.config.architecture, "arm64");
    await assert.rejects(readImage(layout, indexDesc), /2 manifests; choose a platform/);
    await assert.rejects(
      readImage(layout, indexDesc, parsePlatform("linux/s390x")),
      /available: linux\/amd64, linux\/arm64\/v8/,
    );

    if (!(await hasCommand("skopeo"))) return t.skip("skopeo not installed");
    const theirs = join(dir, "theirs");
    await run("skopeo", ["copy", "--quiet", "--all", `oci:${join(dir, "l")}:multi`, `oci:${theirs}:multi`]);
    const copy = await OciLayout.open(theirs);
    const copied = await copy.resolve("multi");
    assert.equal(copied.digest, indexDesc.digest, "skopeo kept our index byte for byte");
    const amdImage = await readImage(copy, copied, parsePlatform("linux/x86_64"));
    assert.equal(amdImage.descriptor.digest, amd.manifestDesc.digest);
  });
});

test("copyGraph: kernel copy, hardlink and streaming paths all verify, a corrupt source blob is refused", async () => {
  await withTempDir(async (dir) => {
    const src = await OciLayout.open(join(dir, "src"), { create: true });
    const img = await writeTinyImage(src, dir, "v1");
    // A source that only offers streams (like a registry).
    const streamingOnly: BlobSource = {
      has: (d) => src.has(d),
      size: (d) => src.size(d),
      open: (b) => src.open(b),
      read: (b, m) => src.read(b, m),
    };
    const viaStream = await OciLayout.open(join(dir, "a"), { create: true });
    assert.equal((await copyGraph(streamingOnly, viaStream, img.manifestDesc)).copied, 3);
    const viaLink = await OciLayout.open(join(dir, "b"), { create: true });
    await copyGraph(src, viaLink, img.manifestDesc, { link: true });
    const { stat } = await import("node:fs/promises");
    assert.equal(
      (await stat(viaLink.blobPath(img.layerDesc.digest))).ino,
      (await stat(src.blobPath(img.layerDesc.digest))).ino,
    );

    const { chmod } = await import("node:fs/promises");
    await chmod(src.blobPath(img.layerDesc.digest), 0o644);
    await writeFile(src.blobPath(img.layerDesc.digest), Buffer.alloc(img.layerDesc.size, 1));
    for (const [name, source, opts] of [
      ["copy", src, {}],
      ["link", src, { link: true }],
      ["stream", streamingOnly, {}],
    ] as const) {
      const sink = await OciLayout.open(join(dir, `bad-${name}`), { create: true });
      await assert.rejects(copyGraph(source, sink, img.manifestDesc, opts), (e: unknown) =>
        isRootstockError(e, "DIGEST_MISMATCH"),
      );
      assert.equal(await sink.has(img.layerDesc.digest), false, name);
      assert.equal(await sink.has(img.manifestDesc.digest), false, `${name}: no manifest without its layer`);
    }
  });
});
