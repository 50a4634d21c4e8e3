import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
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

  it("openBlob resumes a 64 MB download from the offset it had, and the digest verifies", async () => {
    const repo = client.repository("resume/big");
    const logBefore = (await reg.accessLog()).length;
    const digester = new Digester();
    let restarted: Promise<void> | undefined;
    let killedAt = -1;
    for await (const chunk of repo.openBlob(digest, { size: blob.length })) {
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

  it("a chunked push continues in the same upload session after the registry comes back", async () => {
    const repo = client.repository("resume/push");
    const data = randomBytes(40 * MB);
    const dataDigest = sha256(data);
    let restarted: Promise<void> | undefined;
    const logBefore = (await reg.accessLog()).length;
    const result = await repo.pushBlob(data, {
      digest: dataDigest,
      size: data.length,
      chunkSize: 8 * MB,
      progress: (event) => {
        if (event.type === "advance" && event.current === 16 * MB && !restarted) {
          restarted = reg
            .kill()
            .then(() => new Promise<void>((r) => setTimeout(r, 500)).then(() => reg.restart()));
        }
      },
    });
    await restarted;
    assert.equal(result, "uploaded");
    assert.ok(restarted, "the registry was killed during the push");
    const log = (await reg.accessLog()).slice(logBefore);
    assert.equal(
      log.filter((e) => e.method === "POST" && e.path.includes("/blobs/uploads/")).length,
      1,
      "one session",
    );
    assert.equal(log.filter((e) => e.method === "PATCH" && e.status === 202).length, 5);
    // The session was asked how much it holds (the resync after the outage).
    assert.equal(
      log.filter((e) => e.method === "GET" && e.path.includes("/blobs/uploads/") && e.status === 204).length,
      1,
    );
    const back = new Digester();
    for await (const chunk of repo.openBlob(dataDigest)) back.update(chunk);
    assert.equal(back.digest(), dataDigest);
  });
});
