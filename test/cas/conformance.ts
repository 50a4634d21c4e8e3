/**
 * The put/get/verify lifecycle every blob backend must honour (containerd-style
 * exported conformance suite). Run against the content store and OCI layouts:
 * `repositoryConformance("store", async () => ({ repo, ... }))`.
 */
import assert from "node:assert/strict";
import { chmod, writeFile } from "node:fs/promises";
import { test } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import type { ImageRepository } from "../../src/oci/blobs.js";
import { canonicalJson, descriptorFor } from "../../src/oci/canonical.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";

export interface ConformanceSubject {
  repo: ImageRepository;
  /** Where the backend stores a blob (to corrupt it behind its back). */
  blobPath(digest: Digest): string;
  /** Files currently under the backend's ingest directory (must be none after a failure). */
  ingestFiles(): Promise<string[]>;
  cleanup(): Promise<void>;
}

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

function rejectsWith(code: string) {
  return (err: unknown) => isRootstockError(err) && err.code === code;
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of stream) out.push(c);
  return Buffer.concat(out);
}

export function repositoryConformance(name: string, make: () => Promise<ConformanceSubject>): void {
  const withSubject = (title: string, fn: (s: ConformanceSubject) => Promise<void>) =>
    test(`${name} conformance: ${title}`, async () => {
      const s = await make();
      try {
        await fn(s);
      } finally {
        await s.cleanup();
      }
    });

  withSubject("put a stream, then has/size/read/open return the same verified bytes", async ({ repo }) => {
    const digest = sha256("hello world");
    assert.equal(await repo.has(digest), false);
    const put = await repo.put(chunks("hello ", "world"), { digest, size: 11 });
    assert.deepEqual(put, { digest, size: 11, existed: false });
    assert.equal(await repo.has(digest), true);
    assert.equal(await repo.size(digest), 11);
    assert.equal(Buffer.from(await repo.read({ digest, size: 11 })).toString(), "hello world");
    assert.equal((await collect(await repo.open({ digest }))).toString(), "hello world");
  });

  withSubject("put without an expected digest computes it", async ({ repo }) => {
    const put = await repo.put(chunks("a", "b", "c"));
    assert.equal(put.digest, sha256("abc"));
    assert.equal(put.size, 3);
    assert.equal(await repo.has(sha256("abc")), true);
  });

  withSubject("wrong digest or size is rejected and leaves nothing behind", async ({ repo, ingestFiles }) => {
    const claimed = sha256("expected");
    await assert.rejects(
      repo.put(chunks("something else"), { digest: claimed }),
      rejectsWith("DIGEST_MISMATCH"),
    );
    assert.equal(await repo.has(claimed), false);
    assert.equal(await repo.has(sha256("something else")), false);
    await assert.rejects(
      repo.put(Buffer.from("abc"), { digest: sha256("abc"), size: 4 }),
      rejectsWith("SIZE_MISMATCH"),
    );
    await assert.rejects(
      repo.put(chunks("abcdef"), { digest: sha256("abcdef"), size: 2 }),
      rejectsWith("SIZE_MISMATCH"),
    );
    assert.equal(await repo.has(sha256("abc")), false);
    assert.deepEqual(await ingestFiles(), []);
  });

  withSubject("a source that fails midway leaves nothing behind", async ({ repo, ingestFiles }) => {
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield Buffer.from("part");
      throw new Error("connection reset");
    }
    await assert.rejects(repo.put(broken(), { digest: sha256("partial") }), /connection reset/);
    assert.equal(await repo.has(sha256("partial")), false);
    assert.deepEqual(await ingestFiles(), []);
  });

  withSubject("putting a present blob is a no-op that closes the source unread", async ({ repo }) => {
    const digest = sha256("once");
    await repo.put(Buffer.from("once"), { digest });
    let read = false;
    let closed = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        read = true;
        yield Buffer.from("once");
      } finally {
        closed = true;
      }
    }
    const gen = source();
    const put = await repo.put(gen, { digest, size: 4 });
    assert.equal(put.existed, true);
    assert.equal(read, false);
    assert.deepEqual(await gen.next(), { value: undefined, done: true }, "source was closed");
    void closed;
  });

  withSubject("concurrent puts of one blob both succeed and store it once", async ({ repo }) => {
    const data = Buffer.alloc(300_000, 7);
    const digest = sha256(data);
    const results = await Promise.all([
      repo.put(data, { digest }),
      repo.put(chunks(data.toString("latin1"))),
    ]);
    assert.ok(results.every((r) => r.digest === digest));
    assert.equal(await repo.size(digest), data.length);
  });

  withSubject("a blob corrupted on disc fails its verified read", async ({ repo, blobPath }) => {
    const digest = sha256("pristine");
    await repo.put(Buffer.from("pristine"), { digest });
    await chmod(blobPath(digest), 0o644);
    await writeFile(blobPath(digest), "tampered");
    await assert.rejects(collect(await repo.open({ digest })), rejectsWith("DIGEST_MISMATCH"));
    await assert.rejects(repo.read({ digest }), rejectsWith("DIGEST_MISMATCH"));
    await assert.rejects(repo.read({ digest, size: 9 }), rejectsWith("SIZE_MISMATCH"));
  });

  withSubject("missing blobs are NOT_FOUND; oversized reads are refused", async ({ repo }) => {
    await assert.rejects(repo.open({ digest: sha256("nope") }), rejectsWith("NOT_FOUND"));
    await assert.rejects(repo.size(sha256("nope")), rejectsWith("NOT_FOUND"));
    const big = Buffer.alloc(2048);
    const { digest } = await repo.put(big);
    await assert.rejects(repo.read({ digest }, 1024), /over the 1024 byte limit/);
  });

  withSubject("tags point at present manifests and can be replaced and deleted", async ({ repo }) => {
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
    await assert.rejects(
      repo.setTag("v1", desc),
      rejectsWith("NOT_FOUND"),
      "the manifest must be present first",
    );
    await repo.put(manifest, desc);
    await repo.setTag("v1", desc);
    await repo.setTag("v2", desc);
    assert.deepEqual(await repo.tags(), ["v1", "v2"]);
    assert.equal((await repo.resolve("v1")).digest, desc.digest);
    assert.equal(await repo.deleteTag("v1"), true);
    assert.equal(await repo.deleteTag("v1"), false);
    await assert.rejects(
      repo.resolve("v1"),
      (e: unknown) => isRootstockError(e, "NOT_FOUND") && /v2/.test(e.message),
    );
    assert.deepEqual(await repo.tags(), ["v2"]);
  });
}
