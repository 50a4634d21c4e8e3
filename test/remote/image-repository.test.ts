import assert from "node:assert/strict";
import { chmod, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { canonicalJson, descriptorFor } from "../../src/oci/canonical.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import { RegistryClient, RemoteImageRepository } from "../../src/remote/index.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";
import { readAll } from "./image.js";

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

describe("RemoteImageRepository (ImageRepository over docker-registry 2.8)", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  let n = 0;
  const fresh = () => new RemoteImageRepository(client.repository(`conf/r${n++}`));
  const storage = () => join(reg.dir, "data", "docker", "registry", "v2");
  const blobPath = (d: Digest) => join(storage(), "blobs", "sha256", d.slice(7, 9), d.slice(7), "data");
  const uploadedData = async (name: string) =>
    (
      await readdir(join(storage(), "repositories", name, "_uploads"), { recursive: true }).catch(() => [])
    ).filter((f) => f.endsWith("/data"));
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient(reg.host, { insecure: true, env: {}, retryBaseDelayMs: 20 });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  it("put a stream (digest known or not), then has/size/read/open return the same verified bytes", async () => {
    const repo = fresh();
    const digest = sha256("hello world");
    assert.equal(await repo.has(digest), false);
    assert.deepEqual(await repo.put(chunks("hello ", "world"), { digest, size: 11 }), {
      digest,
      size: 11,
      existed: false,
    });
    assert.equal(await repo.has(digest), true);
    assert.equal(await repo.size(digest), 11);
    assert.equal(Buffer.from(await repo.read({ digest, size: 11 })).toString(), "hello world");
    assert.equal((await readAll(await repo.open({ digest }))).toString(), "hello world");
    assert.deepEqual(await repo.put(chunks("a", "b", "c")), {
      digest: sha256("abc"),
      size: 3,
      existed: false,
    });
    assert.equal(await repo.has(sha256("abc")), true);
  });

  it("wrong digest or size is rejected and leaves no blob and no upload session", async () => {
    const repo = fresh();
    const claimed = sha256("expected");
    await assert.rejects(repo.put(chunks("something else"), { digest: claimed }), (e) =>
      isRootstockError(e, "DIGEST_MISMATCH"),
    );
    await assert.rejects(repo.put(Buffer.from("abc"), { digest: sha256("abc"), size: 4 }), (e) =>
      isRootstockError(e, "SIZE_MISMATCH"),
    );
    assert.equal(await repo.has(claimed), false);
    assert.equal(await repo.has(sha256("something else")), false);
    assert.equal(await repo.has(sha256("abc")), false);
    // Every session opened was cancelled; distribution 2.8 keeps only its hash-state
    // files after a cancel (its purge job removes them), never uploaded data.
    const log = await reg.accessLog();
    const opened = log.filter(
      (e) => e.method === "POST" && e.path.startsWith(`/v2/${repo.repo.name}/blobs/uploads/`),
    );
    const cancelled = log.filter(
      (e) => e.method === "DELETE" && e.path.includes("/blobs/uploads/") && e.status === 204,
    );
    assert.equal(opened.length, 2);
    assert.equal(cancelled.length, opened.length);
    assert.deepEqual(await uploadedData(repo.repo.name), []);
  });

  it("a present blob is a no-op that closes the source unread", async () => {
    const repo = fresh();
    const digest = sha256("once");
    await repo.put(Buffer.from("once"), { digest });
    let read = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      read = true;
      yield Buffer.from("once");
    }
    const gen = source();
    assert.equal((await repo.put(gen, { digest, size: 4 })).existed, true);
    assert.equal(read, false);
    assert.deepEqual(await gen.next(), { value: undefined, done: true });
  });

  it("a blob corrupted in the registry's storage fails its verified read; missing is NOT_FOUND", async () => {
    const repo = fresh();
    const digest = sha256("pristine");
    await repo.put(Buffer.from("pristine"), { digest });
    await chmod(blobPath(digest), 0o644);
    await writeFile(blobPath(digest), "tampered");
    await assert.rejects(readAll(await repo.open({ digest })), (e) => isRootstockError(e, "DIGEST_MISMATCH"));
    await assert.rejects(repo.read({ digest }), (e) => isRootstockError(e, "DIGEST_MISMATCH"));
    await assert.rejects(repo.open({ digest: sha256("nope") }), (e) => isRootstockError(e, "NOT_FOUND"));
    await assert.rejects(repo.size(sha256("nope")), (e) => isRootstockError(e, "NOT_FOUND"));
    const { digest: big } = await repo.put(Buffer.alloc(2048));
    await assert.rejects(repo.read({ digest: big }, 1024), /over the 1024 byte limit/);
  });

  it("tags point at present manifests (an index with its children too); 2.8 cannot delete a tag alone", async () => {
    const repo = fresh();
    const config = canonicalJson({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [] },
    });
    const configDesc = descriptorFor(MediaType.OciConfig, config);
    await repo.put(config, configDesc);
    const manifest = canonicalJson({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: [],
    });
    const desc = descriptorFor(MediaType.OciManifest, manifest);
    await assert.rejects(repo.setTag("v1", desc), (e) => isRootstockError(e, "NOT_FOUND"));
    await repo.put(manifest, desc);
    const index = canonicalJson({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [{ ...desc, platform: { os: "linux", architecture: "amd64" } }],
    });
    const indexDesc = descriptorFor(MediaType.OciIndex, index);
    await repo.put(index, indexDesc);
    await repo.setTag("multi", indexDesc); // pushes the child manifest by digest first
    await repo.setTag("v1", desc);
    assert.deepEqual(await repo.tags(), ["multi", "v1"]);
    assert.deepEqual(await repo.resolve("v1"), {
      mediaType: MediaType.OciManifest,
      digest: desc.digest,
      size: desc.size,
    });
    assert.equal((await repo.resolve("multi")).digest, indexDesc.digest);
    await assert.rejects(
      repo.resolve("v9"),
      (e) => isRootstockError(e, "NOT_FOUND") && /multi, v1/.test(e.message),
    );
    assert.equal(await repo.deleteTag("v9"), false);
    await assert.rejects(
      repo.deleteTag("v1"),
      (e) => isRootstockError(e, "REGISTRY") && /cannot delete a tag alone/.test(e.message),
    );
  });
});
