import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { acceptBorrowedChunks } from "../../src/oci/borrow.js";
import { Digester, sha256 } from "../../src/oci/digest.js";
import { RegistryClient } from "../../src/remote/index.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";

const MB = 1024 * 1024;

describe("network loss mid-transfer (registry killed, then restarted on the same port)", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  const blob = randomBytes(64 * MB);
  const digest = sha256(blob);
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient(reg.host, { insecure: true, env: {}, retryBaseDelayMs: 200 });
    await client.repository("resume/big").pushBlob(blob, { digest, size: blob.length, chunkSize: 16 * MB });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  for (const borrowed of [false, true]) {
    it(`openBlob resumes a 64 MB download from the offset it had, and the digest verifies (${borrowed ? "borrowed chunks: bulk receive" : "owned chunks"})`, async () => {
      const repo = client.repository("resume/big");
      const logBefore = (await reg.accessLog()).length;
      const digester = new Digester();
      let restarted: Promise<void> | undefined;
      let killedAt = -1;
      const stream = repo.openBlob(digest, { size: blob.length });
      if (borrowed) acceptBorrowedChunks(stream);
      for await (const chunk of stream) {
        // Compare as we go: every byte is where it belongs, none repeated or skipped.
        assert.ok(Buffer.from(chunk).equals(blob.subarray(digester.size, digester.size + chunk.length)));
        digester.update(chunk);
        if (killedAt < 0 && digester.size >= 8 * MB) {
          killedAt = digester.size;
          await reg.kill();
          restarted = new Promise((r) => setTimeout(r, 1000)).then(() => reg.restart());
        }
      }
      await restarted;
      assert.equal(digester.size, blob.length);
      assert.equal(digester.digest(), digest);
      const gets = (await reg.accessLog())
        .slice(logBefore)
        .filter((e) => e.method === "GET" && e.path.includes(digest));
      const resumed = gets.filter((e) => e.status === 206);
      assert.equal(resumed.length, 1, "one ranged GET after the restart");
      const resumedFrom = blob.length - resumed[0]!.bytes;
      assert.ok(
        resumedFrom >= killedAt,
        `resumed from ${resumedFrom}, at least where it was killed (${killedAt})`,
      );
      assert.ok(resumedFrom < blob.length);
    });
  }

  /**
   * Content that kills the registry once `killAt` bytes have been read from it (and
   * so, for a chunked push, between two PATCHes), restarting it half a second later.
   */
  function killingSource(data: Buffer, killAt: number) {
    const state: { restarted?: Promise<void> } = {};
    const open = async function* (): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < data.length; at += MB) {
        if (at === killAt && !state.restarted) {
          await reg.kill();
          state.restarted = new Promise<void>((r) => setTimeout(r, 500)).then(() => reg.restart());
        }
        yield data.subarray(at, at + MB);
      }
    };
    return { open, state };
  }

  it("a chunked push continues in the same upload session after the registry comes back", async () => {
    const repo = client.repository("resume/push");
    const data = randomBytes(24 * MB);
    const dataDigest = sha256(data);
    const source = killingSource(data, 16 * MB);
    const logBefore = (await reg.accessLog()).length;
    const result = await repo.pushBlob(source.open, {
      digest: dataDigest,
      size: data.length,
      chunkSize: 8 * MB,
    });
    assert.ok(source.state.restarted, "the registry was killed during the push");
    await source.state.restarted;
    assert.equal(result, "uploaded");
    const log = (await reg.accessLog()).slice(logBefore);
    const count = (method: string, status: number) =>
      log.filter((e) => e.method === method && e.path.includes("/blobs/uploads/") && e.status === status)
        .length;
    assert.equal(count("POST", 202), 1, "one session");
    assert.equal(count("PATCH", 202), 3, "each chunk sent once");
    assert.equal(count("GET", 204), 1, "the session was asked how much it holds");
    const back = new Digester();
    for await (const chunk of repo.openBlob(dataDigest)) back.update(chunk);
    assert.equal(back.digest(), dataDigest);
  });

  it("a streamed push cut mid-PATCH starts a new session (distribution drops the cut one) and verifies", async () => {
    const repo = client.repository("resume/streamed");
    const data = randomBytes(32 * MB);
    const dataDigest = sha256(data);
    const source = killingSource(data, 16 * MB);
    const logBefore = (await reg.accessLog()).length;
    const result = await repo.pushBlob(source.open, { digest: dataDigest, size: data.length });
    assert.ok(source.state.restarted, "the registry was killed during the push");
    await source.state.restarted;
    assert.equal(result, "uploaded");
    const log = (await reg.accessLog()).slice(logBefore);
    const count = (method: string, status: number) =>
      log.filter((e) => e.method === method && e.path.includes("/blobs/uploads/") && e.status === status)
        .length;
    assert.equal(count("GET", 404), 1, "the cut session was asked for its offset and is gone");
    assert.equal(count("POST", 202), 2, "a second session after the outage");
    assert.equal(count("PATCH", 202), 1);
    assert.equal(count("PUT", 201), 1);
    const back = new Digester();
    for await (const chunk of repo.openBlob(dataDigest)) back.update(chunk);
    assert.equal(back.digest(), dataDigest);
  });
});
