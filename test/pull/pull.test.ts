/**
 * pull into the store from an OCI layout: zstd:chunked layers partially (a second
 * image sharing files fetches only what changed), gzip/zstd layers exploded; the
 * record rebuilds the exact layer tar; the record's entries give the tar's tree.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { link, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { du } from "../../src/cas/du.js";
import { fsck } from "../../src/cas/fsck.js";
import { ContentStore } from "../../src/cas/store.js";
import { encodeLayer } from "../../src/compress/layer.js";
import { assembleImage, hostPlatform, writeImage } from "../../src/image/assemble.js";
import { openEndpoint } from "../../src/image/endpoint.js";
import { importTarball } from "../../src/image/import.js";
import { layerEntries, layerUsage, readLayerRecord, rebuildLayerTar } from "../../src/layers/index.js";
import { parseReference } from "../../src/oci/reference.js";
import { pullImage } from "../../src/pull/pull.js";
import { openPullSource } from "../../src/pull/source.js";
import { readFileChunks, readTar } from "../../src/tar/index.js";
import { applyLayers, fromTar, Tree, treeDigest } from "../../src/tree/index.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);

/** A small root filesystem tar (GNU tar): shared and unique files, zeros, links, xattr-free. */
async function makeTar(dir: string, name: string, variant: number): Promise<string> {
  const root = join(dir, `${name}-root`);
  await mkdir(join(root, "usr/bin"), { recursive: true });
  await mkdir(join(root, "etc"), { recursive: true });
  for (let i = 0; i < 40; i++) {
    const body = createHash("sha256")
      .update(`file ${i}`)
      .digest("hex")
      .repeat(50 + i * 7);
    await writeFile(join(root, "usr/bin", `tool${i}`), body, { mode: 0o755 });
  }
  await writeFile(join(root, "etc/version"), `version ${variant}\n`);
  await writeFile(join(root, "etc/zeros"), Buffer.alloc(300_000));
  await writeFile(join(root, "etc/dup"), "same content\n");
  await writeFile(join(root, "etc/dup2"), "same content\n");
  await writeFile(join(root, "etc/empty"), "");
  await symlink("../usr/bin/tool1", join(root, "etc/link"));
  await link(join(root, "usr/bin/tool2"), join(root, "usr/bin/tool2-hard"));
  if (variant > 0) {
    await writeFile(
      join(root, "usr/bin/new-tool"),
      Buffer.from(createHash("sha512").update("x").digest()).toString("base64").repeat(4000),
    );
  }
  const tar = join(dir, `${name}.tar`);
  await run("tar", ["-C", root, "--sort=name", "--mtime=@1700000000", "--numeric-owner", "-cf", tar, "."]);
  return tar;
}

async function sha256Stream(s: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash("sha256");
  for await (const c of s) h.update(c);
  return `sha256:${h.digest("hex")}`;
}

describe("pull from an OCI layout", () => {
  it("pulls zstd:chunked partially, reuses files, rebuilds the exact tar", async () => {
    await withTempDir(async (dir) => {
      const tar0 = await makeTar(dir, "img0", 0);
      const tar1 = await makeTar(dir, "img1", 1);
      const layoutRef = (tag: string) => parseReference(`oci:${join(dir, "layout")}:${tag}`);
      const dest = await openEndpoint(layoutRef("v0"), { storeDir: join(dir, "unused"), create: true });
      const imp0 = await importTarball(tar0, dest, "v0");
      const imp1 = await importTarball(tar1, dest, "v1");
      const store = await ContentStore.open(join(dir, "store"), { durability: "batch" });

      const r0 = await pullImage(await openPullSource(layoutRef("v0")), store, {
        destination: { repository: "img", tag: "v0" },
        fullPullThreshold: 1,
      });
      assert.equal(r0.layers[0]?.action, "partial");
      assert.equal(r0.digest, imp0.digest);
      const rec0 = await readLayerRecord(store, imp0.layer.digest);
      assert.ok(rec0);
      assert.equal(await sha256Stream(rebuildLayerTar(store, rec0)), imp0.layer.diffId);
      // The record's entries make the same tree as the tar itself.
      const fromRecord = applyLayers(new Tree(), layerEntries(rec0));
      const fromTarTree = await fromTar(readTar(readFileChunks(tar0)));
      assert.equal(treeDigest(fromRecord), treeDigest(fromTarTree));
      assert.equal(treeDigest(fromRecord), imp0.treeDigest);

      const r1 = await pullImage(await openPullSource(layoutRef("v1")), store, {
        destination: { repository: "img", tag: "v1" },
      });
      const l1 = r1.layers[0]!;
      assert.equal(l1.action, "partial");
      // Only etc/version and usr/bin/new-tool are new contents.
      assert.equal(l1.filesFetched, 2);
      assert.ok(l1.filesReused > 40);
      const rec1 = await readLayerRecord(store, imp1.layer.digest);
      assert.equal(await sha256Stream(rebuildLayerTar(store, rec1!)), imp1.layer.diffId);

      // Pulling again skips the recorded layer.
      const again = await pullImage(await openPullSource(layoutRef("v1")), store, {});
      assert.equal(again.layersSkipped, 1);
      assert.equal(again.bytesRead, 0);

      const report = await fsck(store);
      assert.deepEqual(report.problems, []);
      assert.equal((await store.getRef("img", "v1"))?.digest, imp1.digest);
      const usage = await layerUsage(store);
      assert.equal(usage.layers, 2);
      assert.ok(usage.dedupRatio > 1.5, `dedup ${usage.dedupRatio}`);
      assert.ok((await du(store)).files.count > 40);
    });
  });

  it("pulls a two-layer image (whiteouts, both layers recorded, applied in order)", async () => {
    await withTempDir(async (dir) => {
      const tar0 = await makeTar(dir, "base", 0);
      const upper = join(dir, "upper");
      await mkdir(join(upper, "etc"), { recursive: true });
      await writeFile(join(upper, "etc/.wh.version"), "");
      await writeFile(join(upper, "etc/added"), "added in layer 2\n");
      const tar1 = join(dir, "upper.tar");
      await run("tar", [
        "-C",
        upper,
        "--sort=name",
        "--mtime=@1700000000",
        "--numeric-owner",
        "-cf",
        tar1,
        ".",
      ]);
      const layers = [];
      const ref = parseReference(`oci:${join(dir, "layout")}:two`);
      const dest = await openEndpoint(ref, { storeDir: join(dir, "unused"), create: true });
      for (const [tar, compression] of [
        [tar0, "zstd:chunked"],
        [tar1, "gzip"],
      ] as const) {
        const { blob, result } = encodeLayer(readFileChunks(tar), { compression });
        result.catch(() => {});
        await dest.put(blob);
        layers.push(await result);
      }
      await writeImage(dest, assembleImage({ platform: hostPlatform(), layers }), "two");
      const store = await ContentStore.open(join(dir, "store"));
      const r = await pullImage(await openPullSource(ref), store, {
        destination: { repository: "two", tag: "t" },
      });
      assert.deepEqual(
        r.layers.map((l) => l.action),
        ["full", "full"],
      );
      const records = await Promise.all(layers.map((l) => readLayerRecord(store, l.digest)));
      const tree = applyLayers(new Tree(), ...records.map((rec) => layerEntries(rec!)));
      assert.equal(tree.has("etc/version"), false);
      assert.equal(tree.get("etc/added")?.type, "file");
      assert.equal(tree.get("usr/bin/tool3")?.type, "file");
      assert.deepEqual((await fsck(store)).problems, []);
    });
  });

  for (const compression of ["gzip", "zstd"] as const) {
    it(`explodes a ${compression} layer into file objects shared with chunked ones`, async () => {
      await withTempDir(async (dir) => {
        const tar0 = await makeTar(dir, "img0", 0);
        const ref = parseReference(`oci:${join(dir, "layout")}:plain`);
        const dest = await openEndpoint(ref, { storeDir: join(dir, "unused"), create: true });
        const imp = await importTarball(tar0, dest, "plain", { compression });
        const chunkedRef = parseReference(`oci:${join(dir, "layout")}:chunked`);
        await importTarball(tar0, dest, "chunked");
        const store = await ContentStore.open(join(dir, "store"));
        const r = await pullImage(await openPullSource(ref), store, {
          destination: { repository: "p", tag: "x" },
        });
        assert.equal(r.layers[0]?.action, "full");
        assert.equal(r.layers[0]?.bytesRead, imp.layer.size);
        const rec = await readLayerRecord(store, imp.layer.digest);
        assert.equal(await sha256Stream(rebuildLayerTar(store, rec!)), imp.layer.diffId);
        // The same files in a zstd:chunked layer are all reused: only TOC + tar-split are read.
        const c = await pullImage(await openPullSource(chunkedRef), store, {});
        assert.equal(c.layers[0]?.action, "partial");
        assert.equal(c.layers[0]?.filesFetched, 0);
        assert.deepEqual((await fsck(store)).problems, []);
      });
    });
  }
});
