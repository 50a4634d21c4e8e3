/**
 * Hostile images served by a real docker-registry: each crafted layer makes the
 * pull fail with a one-line error naming what is wrong, and the store stays clean
 * (fsck: no problem; no ref, no layer record; gc removes whatever was ingested).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { fsck } from "../../src/cas/fsck.js";
import { gc } from "../../src/cas/gc.js";
import { ContentStore } from "../../src/cas/store.js";
import {
  chunkedAnnotations,
  encodeFooterFrame,
  parseChunkedAnnotations,
  skippableFrameHeader,
} from "../../src/compress/footer.js";
import { type EncodedLayer, encodeLayer } from "../../src/compress/layer.js";
import { parseTarSplit, TARSPLIT_FILE, type TarSplitEntry } from "../../src/compress/tarsplit.js";
import { parseToc, serializeToc, type Toc } from "../../src/compress/toc.js";
import { zstdCompress, zstdDecompress } from "../../src/compress/zstd.js";
import { isRootstockError } from "../../src/errors.js";
import { assembleImage, hostPlatform } from "../../src/image/assemble.js";
import { readLayerRecord } from "../../src/layers/store.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { parseReference } from "../../src/oci/reference.js";
import { pullImage } from "../../src/pull/pull.js";
import { openPullSource } from "../../src/pull/source.js";
import { RegistryClient } from "../../src/remote/client.js";
import { readFileChunks } from "../../src/tar/index.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);

interface Parts {
  data: Uint8Array;
  toc: Toc;
  tarSplit: TarSplitEntry[];
  tarSplitJson: Uint8Array;
}

function splitBlob(blob: Uint8Array, layer: EncodedLayer): Parts {
  const p = parseChunkedAnnotations(layer.annotations)!;
  const ts = p.tarSplit!;
  const toc = parseToc(
    Buffer.from(zstdDecompress(blob.subarray(p.tocOffset, p.tocOffset + p.tocLength), "toc")).toString(),
  );
  const tarSplitJson = zstdDecompress(blob.subarray(ts.offset, ts.offset + ts.length), "ts");
  return {
    data: blob.subarray(0, p.tocOffset - 8),
    toc,
    tarSplit: [...parseTarSplit(tarSplitJson)],
    tarSplitJson,
  };
}

/** Reassembles a blob from data frames, a TOC and tar-split JSON lines (the writer's layout). */
function joinBlob(data: Uint8Array, toc: Toc, tarSplitJson: Uint8Array, opts: { tsDigest?: Digest } = {}) {
  const zTs = zstdCompress(tarSplitJson, 3);
  const tocWithTs = { ...toc, tarSplitDigest: opts.tsDigest ?? sha256(zTs) };
  const tocJson = Buffer.from(serializeToc(tocWithTs));
  const zToc = zstdCompress(tocJson, 3);
  const tocOffset = data.length + 8;
  const tsOffset = tocOffset + zToc.length + 8;
  const values = {
    tocDigest: sha256(zToc),
    tocOffset,
    tocLength: zToc.length,
    tocUncompressedLength: tocJson.length,
    tarSplitOffset: tsOffset,
    tarSplitLength: zTs.length,
    tarSplitUncompressedLength: tarSplitJson.length,
  };
  const footer = encodeFooterFrame({ ...values, manifestType: 1 });
  const blob = Buffer.concat([
    data,
    skippableFrameHeader(zToc.length),
    zToc,
    skippableFrameHeader(zTs.length),
    zTs,
    footer,
  ]);
  return { blob, annotations: chunkedAnnotations(values, false) };
}

function tarSplitLines(entries: TarSplitEntry[]): Uint8Array {
  const lines = entries.map((e) =>
    e.type === TARSPLIT_FILE
      ? JSON.stringify({
          type: 1,
          name: e.name,
          ...(e.size ? { size: e.size } : {}),
          payload: e.crc ? Buffer.from(e.crc).toString("base64") : null,
          position: e.position,
        })
      : JSON.stringify({ type: 2, payload: Buffer.from(e.payload).toString("base64"), position: e.position }),
  );
  return Buffer.from(`${lines.join("\n")}\n`);
}

describe("hostile images", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  let layer: EncodedLayer;
  let parts: Parts;

  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient(reg.host, { insecure: true });
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      await mkdir(join(root, "usr/lib"), { recursive: true });
      for (let i = 0; i < 12; i++) {
        await writeFile(
          join(root, "usr/lib", `lib${i}.so`),
          createHash("sha256")
            .update(String(i))
            .digest("hex")
            .repeat(300 + i),
        );
      }
      await writeFile(join(root, "usr/lib/zeros"), Buffer.alloc(5000));
      const tar = join(tmp, "l.tar");
      await run("tar", ["-C", root, "--sort=name", "--mtime=@1700000000", "-cf", tar, "."]);
      const { blob, result } = encodeLayer(readFileChunks(tar), { compression: "zstd:chunked" });
      const chunks: Uint8Array[] = [];
      for await (const c of blob) chunks.push(c);
      layer = await result;
      parts = splitBlob(Buffer.concat(chunks), layer);
    });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  /** Pushes an image with this layer blob (and diff_id) and pulls it into a fresh store. */
  async function pullCrafted(
    name: string,
    blob: Uint8Array,
    annotations: Record<string, string>,
    diffId = layer.diffId,
  ) {
    const repo = client.repository(`hostile/${name}`);
    const desc: EncodedLayer = { ...layer, digest: sha256(blob), size: blob.length, diffId, annotations };
    await repo.pushBlob(blob, { digest: desc.digest, size: desc.size });
    const image = assembleImage({ platform: hostPlatform(), layers: [desc] });
    await repo.pushBlob(image.config.bytes, {
      digest: image.config.descriptor.digest,
      size: image.config.descriptor.size,
    });
    await repo.putManifest("v1", image.manifest.bytes, image.manifest.descriptor.mediaType);
    return withTempDir(async (tmp) => {
      const store = await ContentStore.open(join(tmp, "store"));
      let error: unknown;
      try {
        await pullImage(
          await openPullSource(parseReference(`docker://${reg.host}/hostile/${name}:v1`)),
          store,
          {
            destination: { repository: name, tag: "v1" },
            fullPullThreshold: 1,
          },
        );
      } catch (err) {
        error = err;
      }
      assert.ok(isRootstockError(error), `pull of ${name} must fail: ${String(error)}`);
      assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
      // Nothing visible: no ref, no record; fsck clean; gc sweeps what was ingested.
      assert.equal(await store.getRef(name, "v1"), undefined);
      assert.equal(await readLayerRecord(store, desc.digest), undefined);
      assert.deepEqual((await fsck(store)).problems, []);
      await gc(store);
      assert.equal((await store.files.list()).digests.length, 0);
      return error;
    });
  }

  test("the unmodified layer pulls (the crafting itself is sound)", async () => {
    const { blob, annotations } = joinBlob(parts.data, parts.toc, parts.tarSplitJson);
    const repo = client.repository("hostile/sound");
    const desc: EncodedLayer = { ...layer, digest: sha256(blob), size: blob.length, annotations };
    await repo.pushBlob(blob, { digest: desc.digest, size: desc.size });
    const image = assembleImage({ platform: hostPlatform(), layers: [desc] });
    await repo.pushBlob(image.config.bytes, {
      digest: image.config.descriptor.digest,
      size: image.config.descriptor.size,
    });
    await repo.putManifest("v1", image.manifest.bytes, image.manifest.descriptor.mediaType);
    await withTempDir(async (tmp) => {
      const store = await ContentStore.open(join(tmp, "store"));
      const r = await pullImage(
        await openPullSource(parseReference(`docker://${reg.host}/hostile/sound:v1`)),
        store,
        {
          fullPullThreshold: 1,
        },
      );
      assert.equal(r.layers[0]?.action, "partial");
      assert.deepEqual((await fsck(store)).problems, []);
    });
  });

  test("a TOC offset outside the blob", async () => {
    const toc = structuredClone(parts.toc);
    const e = toc.entries.find((x) => x.name.endsWith("lib3.so"))!;
    e.offset = parts.data.length + 1_000_000;
    e.endOffset = e.offset + 100;
    const { blob, annotations } = joinBlob(parts.data, toc, parts.tarSplitJson);
    const err = (await pullCrafted("offset", blob, annotations)) as Error;
    assert.match(err.message, /lib3\.so.*offset \d+ is past the data/);
  });

  test("a file whose bytes do not match its TOC digest", async () => {
    const toc = structuredClone(parts.toc);
    const e = toc.entries.find((x) => x.name.endsWith("lib5.so"))!;
    e.digest = sha256("something else");
    const { blob, annotations } = joinBlob(parts.data, toc, parts.tarSplitJson);
    const err = (await pullCrafted("content", blob, annotations)) as Error;
    assert.match(err.message, /file ".*lib5\.so": content hashes to sha256:[0-9a-f]{64}, TOC says/);
  });

  test("a TOC that disagrees with the tar-split", async () => {
    const toc = structuredClone(parts.toc);
    const e = toc.entries.find((x) => x.name.endsWith("lib7.so"))!;
    e.mode = 0o4755;
    const { blob, annotations } = joinBlob(parts.data, toc, parts.tarSplitJson);
    const err = (await pullCrafted("disagree", blob, annotations)) as Error;
    assert.match(err.message, /TOC entry ".*lib7\.so" does not match the tar-split: mode differs/);
  });

  test("a tar-split whose digest is not the TOC's", async () => {
    const { blob, annotations } = joinBlob(parts.data, parts.toc, parts.tarSplitJson, {
      tsDigest: sha256("x"),
    });
    const err = (await pullCrafted("tsdigest", blob, annotations)) as Error;
    assert.match(err.message, /tar-split: hashes to sha256:[0-9a-f]{64}, TOC tarSplitDigest says/);
  });

  test("a tar-split CRC-64 that does not match the file", async () => {
    const ts = parts.tarSplit.map((e) =>
      e.type === TARSPLIT_FILE && e.name.endsWith("lib9.so") ? { ...e, crc: new Uint8Array(8).fill(7) } : e,
    );
    const { blob, annotations } = joinBlob(parts.data, parts.toc, tarSplitLines(ts));
    const err = (await pullCrafted("crc", blob, annotations)) as Error;
    assert.match(err.message, /lib9\.so.*CRC-64/);
  });

  test("a config diff_id the rebuilt tar does not hash to", async () => {
    const { blob, annotations } = joinBlob(parts.data, parts.toc, parts.tarSplitJson);
    const err = (await pullCrafted("diffid", blob, annotations, sha256("not the tar"))) as Error;
    assert.match(err.message, /rebuilt tar hashes to sha256:[0-9a-f]{64}, diff_id says/);
  });

  test("a TOC whose digest is not the annotation's", async () => {
    const { blob, annotations } = joinBlob(parts.data, parts.toc, parts.tarSplitJson);
    const bad = { ...annotations, "io.github.containers.zstd-chunked.manifest-checksum": sha256("toc") };
    const err = (await pullCrafted("tocdigest", blob, bad)) as Error;
    assert.match(err.message, /compressed TOC hashes to .*manifest-checksum says/);
  });

  for (const compression of ["gzip", "zstd"] as const) {
    test(`a ${compression} layer whose tar is not its diff_id (full pull)`, async () => {
      const { blob, result } = encodeLayer(
        (async function* () {
          yield Buffer.concat([parts.data.subarray(0, 0), Buffer.alloc(1024)]);
        })(),
        { compression },
      );
      const chunks: Uint8Array[] = [];
      for await (const c of blob) chunks.push(c);
      await result;
      const gz = Buffer.concat(chunks);
      const repo = client.repository(`hostile/${compression}`);
      const desc: EncodedLayer = {
        ...layer,
        mediaType: `application/vnd.oci.image.layer.v1.tar+${compression}`,
        digest: sha256(gz),
        size: gz.length,
        annotations: {},
      };
      await repo.pushBlob(gz, { digest: desc.digest, size: desc.size });
      const image = assembleImage({ platform: hostPlatform(), layers: [desc] });
      await repo.pushBlob(image.config.bytes, {
        digest: image.config.descriptor.digest,
        size: image.config.descriptor.size,
      });
      await repo.putManifest("v1", image.manifest.bytes, image.manifest.descriptor.mediaType);
      await withTempDir(async (tmp) => {
        const store = await ContentStore.open(join(tmp, "store"));
        await assert.rejects(
          pullImage(
            await openPullSource(parseReference(`docker://${reg.host}/hostile/${compression}:v1`)),
            store,
            {},
          ),
          /tar hashes to sha256:[0-9a-f]{64}, diff_id says/,
        );
        assert.deepEqual((await fsck(store)).problems, []);
      });
    });
  }
});
