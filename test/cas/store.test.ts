import assert from "node:assert/strict";
import { chmod, link, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { du } from "../../src/cas/du.js";
import { fsck } from "../../src/cas/fsck.js";
import { gc } from "../../src/cas/gc.js";
import { ContentStore } from "../../src/cas/store.js";
import { isRootstockError } from "../../src/errors.js";
import { canonicalJson, descriptorFor } from "../../src/oci/canonical.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import type { Descriptor } from "../../src/oci/types.js";
import { withTempDir } from "../helpers/tmp.js";
import { repositoryConformance } from "./conformance.js";

repositoryConformance("store", async () => {
  const dir = await mkdtemp(join(tmpdir(), "rootstock-cas-"));
  const store = await ContentStore.open(dir);
  return {
    repo: store.repository("conformance/repo"),
    blobPath: (d) => store.blobPath(d),
    ingestFiles: () => store.listIngest(),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

/** Puts a one-layer image (config + layer + manifest) and returns its descriptors. */
async function putImage(store: ContentStore, seed: string) {
  const layer = Buffer.from(`layer ${seed}`);
  const layerDesc = descriptorFor(MediaType.OciLayerGzip, layer);
  const config = canonicalJson({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [sha256(`tar ${seed}`)] },
  });
  const configDesc = descriptorFor(MediaType.OciConfig, config);
  const manifest = canonicalJson({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configDesc,
    layers: [layerDesc],
  });
  const manifestDesc = descriptorFor(MediaType.OciManifest, manifest);
  await store.withLease(async () => {
    await store.putBlob(layer, layerDesc);
    await store.putBlob(config, configDesc);
    await store.putBlob(manifest, manifestDesc);
  });
  return { layerDesc, configDesc, manifestDesc };
}

test("blobs are read-only, named by digest, and the ingest directory is empty afterwards", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const { digest } = await store.putBlob(Buffer.from("x"));
    const info = await stat(store.blobPath(digest));
    assert.equal(info.mode & 0o777, 0o444);
    assert.equal(store.blobPath(digest), join(dir, "blobs", "sha256", digest.slice(7)));
    assert.deepEqual(await store.listIngest(), []);
  });
});

test("file objects: fan-out paths, stream and import (copy and link), presence", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(join(dir, "store"));
    const put = await store.putFile(Buffer.from("#!/bin/sh\n"));
    const hex = put.digest.slice(7);
    assert.equal(
      store.filePath(put.digest),
      join(dir, "store", "files", "sha256", hex.slice(0, 2), hex.slice(2)),
    );
    assert.equal(await store.hasFile(put.digest), true);
    const src = join(dir, "src");
    await writeFile(src, "payload");
    const copied = await store.importFile(src, { digest: sha256("payload") });
    assert.equal(copied.digest, sha256("payload"));
    assert.equal((await stat(src)).mode & 0o777, 0o644, "copy leaves the source alone");
    await writeFile(join(dir, "other"), "linked");
    const linked = await store.importFile(join(dir, "other"), undefined, "link");
    assert.equal((await stat(store.filePath(linked.digest))).ino, (await stat(join(dir, "other"))).ino);
    await assert.rejects(store.importFile(src, { digest: sha256("not payload") }, "link"), (e: unknown) =>
      isRootstockError(e, "DIGEST_MISMATCH"),
    );
    assert.deepEqual(await store.listIngest(), []);
    // Hardlinking out of the store, as partial pulls do.
    await link(store.filePath(copied.digest), join(dir, "out"));
    assert.equal((await stat(join(dir, "out"))).nlink, 2);
  });
});

test("refs: set/get/list/delete, validated names, atomic files", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const { manifestDesc } = await putImage(store, "a");
    await store.setRef("mesa/ci", "base-1", manifestDesc);
    await store.setRef("127.0.0.1:5000/x", "t", manifestDesc);
    assert.deepEqual(
      (await store.listRefs()).map((r) => `${r.repository}:${r.tag}`),
      ["127.0.0.1:5000/x:t", "mesa/ci:base-1"],
    );
    assert.equal((await store.getRef("mesa/ci", "base-1"))?.digest, manifestDesc.digest);
    assert.equal(await store.getRef("mesa/ci", "nope"), undefined);
    for (const [repo, tag] of [
      ["mesa/ci", "../escape"],
      ["..", "t"],
      [".", "t"],
      ["a/../../b", "t"],
      ["", "t"],
    ] as const) {
      await assert.rejects(store.setRef(repo, tag, manifestDesc), (e: unknown) =>
        isRootstockError(e, "INVALID_ARGUMENT"),
      );
    }
    assert.equal(await store.deleteRef("mesa/ci", "base-1"), true);
    assert.deepEqual((await store.listRefs()).length, 1);
  });
});

test("gc keeps what refs and metadata reach, deletes the rest, dry run deletes nothing", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const kept = await putImage(store, "kept");
    const dropped = await putImage(store, "dropped");
    await store.setRef("r", "kept", kept.manifestDesc);
    await store.setRef("r", "dropped", dropped.manifestDesc);
    const liveFile = await store.putFile(Buffer.from("live file"));
    const deadFile = await store.putFile(Buffer.from("dead file"));
    await store.putMeta(kept.layerDesc.digest, { files: [liveFile.digest], data: { toc: "kept" } });
    await store.putMeta(dropped.layerDesc.digest, { files: [deadFile.digest], data: { toc: "dropped" } });
    // An index referencing the kept manifest through a second repository.
    const index = canonicalJson({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [kept.manifestDesc],
    });
    const indexDesc = descriptorFor(MediaType.OciIndex, index);
    await store.putBlob(index, indexDesc);
    await store.setRef("idx", "all", indexDesc);
    await store.deleteRef("r", "dropped");
    await store.putBlob(Buffer.from("orphan"));

    const dry = await gc(store, { dryRun: true });
    assert.equal(dry.blobs.count, 4, "dropped layer, config, manifest + orphan");
    assert.equal(dry.files.count, 1);
    assert.equal(dry.meta.count, 1);
    assert.equal((await store.blobs.list()).digests.length, 8, "dry run deleted nothing");

    const real = await gc(store);
    assert.deepEqual({ ...real, dryRun: true }, dry);
    assert.equal(real.bytesFreed, real.blobs.bytes + real.files.bytes + real.meta.bytes + real.ingest.bytes);
    assert.equal(await store.hasBlob(dropped.manifestDesc.digest), false);
    assert.equal(await store.hasBlob(kept.layerDesc.digest), true);
    assert.equal(await store.hasFile(liveFile.digest), true);
    assert.equal(await store.hasFile(deadFile.digest), false);
    assert.equal(await store.getMeta(dropped.layerDesc.digest), undefined);
    assert.deepEqual((await store.getMeta(kept.layerDesc.digest))?.data, { toc: "kept" });
    assert.equal((await fsck(store)).clean, true);

    await store.deleteRef("r", "kept");
    await gc(store);
    assert.equal(await store.hasBlob(kept.manifestDesc.digest), true, "still reachable from the index");
    await store.deleteRef("idx", "all");
    const last = await gc(store);
    assert.equal(last.kept.blobs, 0);
    assert.equal(last.kept.files, 0);
    const usage = await du(store);
    assert.equal(usage.blobs.count + usage.files.count + usage.meta.count + usage.refs, 0);
  });
});

test("gc refuses to run on an unreadable reachable manifest", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const bogus = Buffer.from('{"schemaVersion":2,"layers":"nope"}');
    const desc = descriptorFor(MediaType.OciManifest, bogus);
    await store.putBlob(bogus, desc);
    await store.setRef("r", "t", desc);
    await store.putBlob(Buffer.from("unrelated"));
    await assert.rejects(
      gc(store),
      (e: unknown) =>
        isRootstockError(e, "STORE_CORRUPT") && /config: required field is missing/.test(e.message),
    );
    assert.equal((await store.blobs.list()).digests.length, 2, "nothing deleted");
  });
});

test("fsck finds corrupt and writable objects, dangling refs, missing children, and repairs", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const img = await putImage(store, "x");
    await store.setRef("r", "t", img.manifestDesc);
    const file = await store.putFile(Buffer.from("file"));
    assert.deepEqual((await fsck(store)).problems, []);

    // Corrupt the layer, make the file object writable, delete the config, dangle a ref.
    await chmod(store.blobPath(img.layerDesc.digest), 0o644);
    await writeFile(store.blobPath(img.layerDesc.digest), "rotten");
    await chmod(store.blobPath(img.layerDesc.digest), 0o444);
    await chmod(store.filePath(file.digest), 0o644);
    await rm(store.blobPath(img.configDesc.digest));
    const other = await putImage(store, "other");
    await store.setRef("r", "gone", other.manifestDesc);
    await rm(store.blobPath(other.manifestDesc.digest));
    await writeFile(join(dir, "refs", "r", "bad"), "{");

    const report = await fsck(store);
    assert.equal(report.clean, false);
    const kinds = report.problems.map((p) => `${p.kind} ${p.object}`).sort();
    assert.deepEqual(kinds, [
      "bad-ref ref r:bad",
      `corrupt-object blob ${img.layerDesc.digest}`,
      "dangling-ref ref r:gone",
      `missing-child blob ${img.configDesc.digest}`,
      `writable-object file object ${file.digest}`,
    ]);
    const repaired = await fsck(store, { repair: true });
    assert.equal(repaired.problems.find((p) => p.kind === "corrupt-object")?.repaired, true);
    assert.equal(await store.hasBlob(img.layerDesc.digest), false);
  });
});

test("a partially pulled layer (metadata standing in for its blob) is not a missing child", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const img = await putImage(store, "partial");
    await store.setRef("r", "t", img.manifestDesc);
    const file = await store.putFile(Buffer.from("content of a file in the layer"));
    await store.putMeta(img.layerDesc.digest, { files: [file.digest], standsInForBlob: true, data: {} });
    await rm(store.blobPath(img.layerDesc.digest), { force: true });
    assert.deepEqual((await fsck(store)).problems, []);
    await gc(store);
    assert.equal(await store.hasFile(file.digest), true);
  });
});

test("putMeta validates and requires the objects it names", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const key = sha256("layer");
    await assert.rejects(store.putMeta(key, { files: [sha256("absent")], data: 1 }), (e: unknown) =>
      isRootstockError(e, "NOT_FOUND"),
    );
    await assert.rejects(
      store.putMeta(key, { files: ["x" as never], data: 1 }),
      /metadata .*: files\[0\]: not a sha256 digest/,
    );
    await store.putMeta(key, { data: { a: 1 } });
    assert.deepEqual(await store.getMeta(key), { data: { a: 1 } });
    assert.equal(await store.deleteMeta(key), true);
  });
});

test("du counts objects and bytes", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const img = await putImage(store, "du");
    await store.setRef("r", "t", img.manifestDesc as Descriptor);
    await store.putFile(Buffer.alloc(10_000, 1));
    const usage = await du(store);
    assert.equal(usage.blobs.count, 3);
    assert.equal(usage.blobs.bytes, img.layerDesc.size + img.configDesc.size + img.manifestDesc.size);
    assert.deepEqual([usage.files.count, usage.files.bytes, usage.refs], [1, 10_000, 1]);
    assert.ok(usage.files.storedBytes >= 10_000);
    assert.equal((await readdir(join(dir, "ingest"))).length, 0);
  });
});

test("batch durability: objects commit without fsync, a ref write syncs first, the result is a normal store", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir, { durability: "batch" });
    assert.equal(store.files.durable, false);
    const files: Digest[] = [];
    for (let i = 0; i < 20; i++) files.push((await store.putFile(Buffer.from(`file ${i}`))).digest);
    const img = await putImage(store, "batch");
    await store.putMeta(img.layerDesc.digest, { files, data: null });
    await store.setRef("r", "t", img.manifestDesc);
    assert.equal((await stat(store.filePath(files[0]!))).mode & 0o777, 0o444);
    const report = await fsck(store);
    assert.deepEqual([report.problems, report.leftovers], [[], []]);
    assert.equal((await gc(store)).kept.files, 20);
  });
});

test("gc inside this process's own lease is refused instead of deadlocking", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    await store.withLease(async () => {
      await assert.rejects(
        gc(store),
        (e: unknown) => isRootstockError(e, "LOCKED") && /holds a shared lease/.test(e.message),
      );
    });
    assert.equal((await gc(store)).blobs.count, 0);
  });
});

test("a put over a damaged (truncated) copy of the same blob repairs it", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(dir);
    const data = Buffer.from("the whole blob");
    const { digest } = await store.putBlob(data);
    await chmod(store.blobPath(digest), 0o644);
    await writeFile(store.blobPath(digest), "the wh");
    const again = await store.putBlob(data, { digest, size: data.length });
    assert.equal(again.existed, false);
    assert.equal(Buffer.from(await store.readBlob({ digest })).toString(), "the whole blob");
    assert.equal((await stat(store.blobPath(digest))).mode & 0o777, 0o444);
    assert.deepEqual(await store.listIngest(), []);
  });
});
