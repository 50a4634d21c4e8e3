import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { isRootstockError } from "../../src/errors.js";
import { sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import { RegistryClient, RegistryError } from "../../src/remote/index.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";
import { withTempDir } from "../helpers/tmp.js";
import { blobOf, makeImage, readAll } from "./image.js";

describe("remote against docker-registry 2.8 (plain http)", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient(reg.host, { insecure: true, env: {}, retryBaseDelayMs: 50 });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  it("pings: falls back from https to http for an insecure registry", async () => {
    assert.deepEqual(await client.ping(), { scheme: "http", auth: "none" });
  });

  it("speaks plain http with its own client: undici is never loaded", async () => {
    const digest = sha256("undici-free");
    await client.repository("test/plain").pushBlob(Buffer.from("undici-free"), { digest, size: 11 });
    const remote = fileURLToPath(new URL("../../src/remote/index.ts", import.meta.url));
    const script = `
      import { createRequire } from "node:module";
      const { RegistryClient } = await import(${JSON.stringify(remote)});
      const client = new RegistryClient(${JSON.stringify(reg.host)}, { insecure: true, env: {} });
      const chunks = [];
      for await (const c of client.repository("test/plain").openBlob(${JSON.stringify(digest)})) chunks.push(Buffer.from(c));
      await client.close();
      const undici = Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes("/undici/"));
      console.log(JSON.stringify({ text: Buffer.concat(chunks).toString(), undici }));
    `;
    const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    assert.deepEqual(JSON.parse(out), { text: "undici-free", undici: false });
  });

  it("refuses plain http unless the registry is insecure", async () => {
    const strict = new RegistryClient(reg.host, {
      env: { CONTAINERS_REGISTRIES_CONF: "/nonexistent" },
      retries: 0,
    });
    await assert.rejects(
      strict.ping(),
      (err) => isRootstockError(err, "NETWORK") && /https/.test(err.message),
    );
    await strict.close();
  });

  it("pushes an image, reads it back by tag and digest, lists and deletes it", async () => {
    await withTempDir(async (dir) => {
      const image = await makeImage(dir, [{ "a.txt": "hello\n" }, { "b.bin": randomBytes(100_000) }]);
      const repo = client.repository("test/roundtrip");
      for (const blob of [image.config, ...image.layers]) {
        assert.equal(await repo.pushBlob(blob.bytes, blob), "uploaded");
      }
      assert.equal(await repo.pushBlob(image.config.bytes, image.config), "exists");
      const digest = await repo.putManifest("v1", image.manifest.bytes, MediaType.OciManifest);
      assert.equal(digest, image.manifest.digest);

      const byTag = await repo.getManifest("v1");
      assert.equal(byTag.digest, image.manifest.digest);
      assert.equal(byTag.mediaType, MediaType.OciManifest);
      assert.deepEqual(Buffer.from(byTag.bytes), Buffer.from(image.manifest.bytes));
      const byDigest = await repo.getManifest(digest);
      assert.equal(byDigest.digest, digest);
      assert.deepEqual(await repo.headManifest("v1"), {
        digest,
        mediaType: MediaType.OciManifest,
        size: image.manifest.size,
      });

      const layer = image.layers[1]!;
      assert.deepEqual(await repo.headBlob(layer.digest), { size: layer.size });
      const bytes = await readAll(repo.openBlob(layer.digest, { size: layer.size }));
      assert.equal(sha256(bytes), layer.digest);

      await repo.putManifest("v2", image.manifest.bytes, MediaType.OciManifest);
      assert.deepEqual((await repo.listTags()).sort(), ["v1", "v2"]);
      assert.deepEqual((await repo.listTags({ pageSize: 1 })).sort(), ["v1", "v2"]);

      await repo.deleteManifest(digest);
      await assert.rejects(repo.getManifest("v1"), (err) => {
        assert.ok(err instanceof RegistryError);
        assert.equal(err.code, "REGISTRY");
        assert.equal(err.status, 404);
        assert.equal(err.ociCode, "MANIFEST_UNKNOWN");
        assert.equal(err.message, `${reg.host}/test/roundtrip:v1: MANIFEST_UNKNOWN (404): manifest unknown`);
        return true;
      });
    });
  });

  it("uploads a large blob in PATCH chunks and streams it back verified", async () => {
    const bytes = randomBytes(5 * 1024 * 1024 + 123);
    const blob = blobOf(bytes, "application/octet-stream");
    const repo = client.repository("test/chunked");
    const before = (await reg.accessLog()).length;
    const result = await repo.pushBlob(
      async function* () {
        for (let i = 0; i < bytes.length; i += 100_000) yield bytes.subarray(i, i + 100_000);
      },
      { digest: blob.digest, size: blob.size, monolithicMax: 1024 * 1024, chunkSize: 1024 * 1024 },
    );
    assert.equal(result, "uploaded");
    const log = (await reg.accessLog()).slice(before);
    assert.equal(log.filter((e) => e.method === "PATCH" && e.status === 202).length, 6);
    assert.equal(sha256(await readAll(repo.openBlob(blob.digest))), blob.digest);
  });

  it("refuses to commit content that does not match its digest", async () => {
    const repo = client.repository("test/liar");
    const good = randomBytes(1000);
    await assert.rejects(repo.pushBlob(randomBytes(1000), { digest: sha256(good), size: 1000 }), (err) =>
      isRootstockError(err, "DIGEST_MISMATCH"),
    );
    assert.equal(await repo.headBlob(sha256(good)), undefined);
    const big = randomBytes(3 * 1024 * 1024);
    await assert.rejects(
      repo.pushBlob(randomBytes(big.length), {
        digest: sha256(big),
        size: big.length,
        monolithicMax: 1024 * 1024,
        chunkSize: 1024 * 1024,
      }),
      (err) => isRootstockError(err, "DIGEST_MISMATCH"),
    );
    assert.equal(await repo.headBlob(sha256(big)), undefined);
  });

  it("reads ranges: single, several as multipart/byteranges, merged when close", async () => {
    const bytes = randomBytes(300_000);
    const blob = blobOf(bytes, "application/octet-stream");
    const repo = client.repository("test/ranges");
    await repo.pushBlob(bytes, blob);
    const ranges = [
      { offset: 10, length: 100 },
      { offset: 150, length: 50 }, // merged with the first (gap 40)
      { offset: 100_000, length: 5000 },
      { offset: 299_000, length: 1000 },
      { offset: 100_010, length: 10 }, // inside another range
    ];
    const before = (await reg.accessLog()).length;
    const got = new Map<object, Buffer>();
    for await (const { range, bytes: part } of repo.getBlobRanges(blob.digest, ranges, { mergeGap: 1000 })) {
      assert.ok(!got.has(range), "each range once");
      got.set(range, Buffer.from(part));
    }
    assert.equal(got.size, ranges.length);
    for (const r of ranges) assert.deepEqual(got.get(r), bytes.subarray(r.offset, r.offset + r.length));
    const log = (await reg.accessLog()).slice(before);
    assert.equal(log.length, 1, "one request for three spans");
    assert.equal(log[0]!.status, 206);

    // One range per request: three 206 single-range answers.
    const single = [];
    for await (const r of repo.getBlobRanges(blob.digest, ranges, {
      mergeGap: 1000,
      maxRangesPerRequest: 1,
    })) {
      single.push(r);
    }
    assert.equal(single.length, ranges.length);
    assert.equal((await reg.accessLog()).slice(before).length, 4);
  });

  it("reports a range past the blob's end as RANGE_NOT_SATISFIABLE (416)", async () => {
    const bytes = randomBytes(1000);
    const blob = blobOf(bytes, "application/octet-stream");
    const repo = client.repository("test/range416");
    await repo.pushBlob(bytes, blob);
    await assert.rejects(
      (async () => {
        for await (const _ of repo.getBlobRanges(blob.digest, [{ offset: 5000, length: 10 }])) {
          // nothing
        }
      })(),
      (err) => err instanceof RegistryError && err.status === 416 && err.ociCode === "RANGE_NOT_SATISFIABLE",
    );
  });

  it("mounts blobs from another repository instead of uploading them", async () => {
    await withTempDir(async (dir) => {
      const image = await makeImage(dir, [{ "m.bin": randomBytes(50_000) }]);
      const source = client.repository("test/mount-source");
      for (const blob of [image.config, ...image.layers]) await source.pushBlob(blob.bytes, blob);
      await source.putManifest("v1", image.manifest.bytes, MediaType.OciManifest);

      const target = client.repository("test/mount-target");
      const before = (await reg.accessLog()).length;
      for (const blob of [image.config, ...image.layers]) {
        assert.equal(
          await target.pushBlob(blob.bytes, { ...blob, mountFrom: ["test/mount-source"] }),
          "mounted",
        );
      }
      await target.putManifest("v1", image.manifest.bytes, MediaType.OciManifest);
      const log = (await reg.accessLog()).slice(before);
      assert.equal(
        log.filter((e) => e.method === "PATCH" || (e.method === "PUT" && e.path.includes("/blobs/"))).length,
        0,
      );
      assert.equal(
        log.filter((e) => e.method === "POST" && e.path.includes("mount=") && e.status === 201).length,
        2,
      );
      assert.equal((await target.getManifest("v1")).digest, image.manifest.digest);
    });
  });

  it("selects a platform from an image index", async () => {
    await withTempDir(async (dir) => {
      const amd = await makeImage(dir, [{ "arch.txt": "amd64" }]);
      const arm = await makeImage(`${dir}/arm`, [{ "arch.txt": "arm64" }]);
      const repo = client.repository("test/multiarch");
      for (const img of [amd, arm]) {
        for (const blob of [img.config, ...img.layers]) await repo.pushBlob(blob.bytes, blob);
        await repo.putManifest(img.manifest.digest, img.manifest.bytes, MediaType.OciManifest);
      }
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.OciIndex,
          manifests: [
            { ...desc(amd.manifest), platform: { os: "linux", architecture: "amd64" } },
            { ...desc(arm.manifest), platform: { os: "linux", architecture: "arm64", variant: "v8" } },
          ],
        }),
      );
      await repo.putManifest("multi", index, MediaType.OciIndex);
      const all = await repo.getManifest("multi");
      assert.equal(all.mediaType, MediaType.OciIndex);
      const chosen = await repo.getManifest("multi", { platform: { os: "linux", architecture: "arm64" } });
      assert.equal(chosen.digest, arm.manifest.digest);
      await assert.rejects(
        repo.getManifest("multi", { platform: { os: "linux", architecture: "riscv64" } }),
        (err) => isRootstockError(err, "NOT_FOUND") && /linux\/amd64, linux\/arm64\/v8/.test(err.message),
      );
    });
  });
});

function desc(blob: { mediaType: string; digest: string; size: number }) {
  return { mediaType: blob.mediaType, digest: blob.digest, size: blob.size };
}

describe("remote against docker-registry 2.8 over https (self-signed certificate)", () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ tls: true });
  });
  after(async () => {
    await reg?.stop();
  });

  it("refuses the certificate when verifying; with --tls-verify=false pushes, pulls and reads ranges over TLS", async () => {
    const strict = new RegistryClient(reg.host, {
      env: { CONTAINERS_REGISTRIES_CONF: "/nonexistent" },
      retries: 0,
    });
    await assert.rejects(
      strict.ping(),
      (err) => isRootstockError(err, "NETWORK") && /certificate/i.test(err.message),
    );
    await strict.close();
    const client = new RegistryClient(reg.host, { insecure: true, env: {} });
    try {
      assert.deepEqual(await client.ping(), { scheme: "https", auth: "none" });
      const repo = client.repository("tls/blob");
      const blob = randomBytes(3 * 1024 * 1024);
      const digest = sha256(blob);
      // Streamed (one PATCH through undici), then read back whole and by range.
      assert.equal(
        await repo.pushBlob(
          () =>
            (async function* () {
              yield blob;
            })(),
          { digest, size: blob.length, monolithicMax: 0 },
        ),
        "uploaded",
      );
      assert.ok((await readAll(repo.openBlob(digest, { size: blob.length }))).equals(blob));
      const ranges = [];
      for await (const part of repo.getBlobRanges(digest, [{ offset: 1000, length: 5000 }]))
        ranges.push(part);
      assert.equal(ranges.length, 1);
      assert.ok(Buffer.from(ranges[0]!.bytes).equals(blob.subarray(1000, 6000)));
    } finally {
      await client.close();
    }
  });
});
