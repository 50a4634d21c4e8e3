import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { isRootstockError } from "../../src/errors.js";
import { sha256 } from "../../src/oci/digest.js";
import { RegistryClient, RegistryError, staticAuth } from "../../src/remote/index.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";
import { withTempDir } from "../helpers/tmp.js";
import { startTokenServer, type TokenServer } from "../helpers/token-server.js";
import { readAll } from "./image.js";

describe("remote with htpasswd basic auth", () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ htpasswd: { alice: "wonderland" } });
  });
  after(async () => {
    await reg?.stop();
  });

  it("sends credentials from an auth file named by REGISTRY_AUTH_FILE, insecure from registries.conf", async () => {
    await withTempDir(async (dir) => {
      const authFile = join(dir, "auth.json");
      const conf = join(dir, "registries.conf");
      await writeFile(
        authFile,
        JSON.stringify({
          auths: { [reg.host]: { auth: Buffer.from("alice:wonderland").toString("base64") } },
        }),
      );
      await writeFile(conf, `[[registry]]\nlocation = "${reg.host}"\ninsecure = true\n`);
      const client = new RegistryClient(reg.host, {
        env: { REGISTRY_AUTH_FILE: authFile, CONTAINERS_REGISTRIES_CONF: conf, HOME: dir },
      });
      try {
        assert.deepEqual(await client.ping(), { scheme: "http", auth: "basic" });
        const repo = client.repository("private/app");
        const bytes = randomBytes(4096);
        const digest = sha256(bytes);
        assert.equal(await repo.pushBlob(bytes, { digest, size: bytes.length }), "uploaded");
        assert.deepEqual(await readAll(repo.openBlob(digest)), bytes);
      } finally {
        await client.close();
      }
    });
  });

  it("reports refused credentials as UNAUTHORIZED (401) without the secret", async () => {
    const client = new RegistryClient(reg.host, {
      insecure: true,
      auth: staticAuth("alice", "wrong-s3cret"),
    });
    try {
      await assert.rejects(client.repository("private/app").listTags(), (err) => {
        assert.ok(err instanceof RegistryError);
        assert.equal(err.status, 401);
        assert.equal(err.ociCode, "UNAUTHORIZED");
        assert.doesNotMatch(`${err.message} ${inspect(err)}`, /wrong-s3cret/);
        return true;
      });
    } finally {
      await client.close();
    }
  });
});

describe("remote with bearer tokens", () => {
  let tokens: TokenServer;
  let reg: TestRegistry;
  before(async () => {
    tokens = await startTokenServer({ users: { bob: "builder" }, anonymousPull: true });
    reg = await startRegistry({ token: tokens });
  });
  after(async () => {
    await reg?.stop();
    await tokens?.stop();
  });

  it("fetches a token per scope, caches it, and pushes/pulls with it", async () => {
    const client = new RegistryClient(reg.host, { insecure: true, auth: staticAuth("bob", "builder") });
    try {
      assert.deepEqual(await client.ping(), { scheme: "http", auth: "bearer" });
      const repo = client.repository("ci/mesa");
      const blobs = Array.from({ length: 3 }, () => randomBytes(2000));
      for (const bytes of blobs) {
        assert.equal(await repo.pushBlob(bytes, { digest: sha256(bytes), size: bytes.length }), "uploaded");
      }
      for (const bytes of blobs) assert.deepEqual(await readAll(repo.openBlob(sha256(bytes))), bytes);
      // One token for push scope, one for pull scope, reused across all requests.
      assert.deepEqual(tokens.issued.map((t) => [t.account, t.scopes.join(" ")]).sort(), [
        ["bob", "repository:ci/mesa:pull"],
        ["bob", "repository:ci/mesa:pull,push"],
      ]);

      // Cross-repository mount asks for pull on the source in the same token.
      const target = client.repository("ci/mesa-copy");
      const bytes = blobs[0]!;
      assert.equal(
        await target.pushBlob(bytes, { digest: sha256(bytes), size: bytes.length, mountFrom: ["ci/mesa"] }),
        "mounted",
      );
      assert.ok(
        tokens.issued.some(
          (t) =>
            t.scopes.includes("repository:ci/mesa-copy:pull,push") &&
            t.scopes.includes("repository:ci/mesa:pull"),
        ),
      );
    } finally {
      await client.close();
    }
  });

  it("pulls anonymously, and an anonymous push is denied by the registry", async () => {
    const client = new RegistryClient(reg.host, { insecure: true, env: { HOME: "/nonexistent" } });
    try {
      const bytes = randomBytes(100);
      await assert.rejects(
        client.repository("ci/anon").pushBlob(bytes, { digest: sha256(bytes), size: 100 }),
        (err) => err instanceof RegistryError && err.status === 401,
      );
      const pusher = new RegistryClient(reg.host, { insecure: true, auth: staticAuth("bob", "builder") });
      await pusher.repository("ci/public").pushBlob(bytes, { digest: sha256(bytes), size: 100 });
      await pusher.close();
      assert.deepEqual(await readAll(client.repository("ci/public").openBlob(sha256(bytes))), bytes);
      assert.ok(
        tokens.issued.some((t) => t.account === undefined && t.scopes.join() === "repository:ci/public:pull"),
      );
    } finally {
      await client.close();
    }
  });

  it("reports credentials the token server refuses", async () => {
    const client = new RegistryClient(reg.host, { insecure: true, auth: staticAuth("bob", "nope") });
    try {
      await assert.rejects(
        client.repository("ci/mesa").listTags(),
        (err) =>
          isRootstockError(err, "UNAUTHORIZED") && /credentials for bob refused \(401\)/.test(err.message),
      );
    } finally {
      await client.close();
    }
  });
});

describe("bearer tokens that expire", () => {
  it("are fetched again once their expires_in has passed", async () => {
    // expires_in 11 s: the client refreshes 10 s early, so after 1 s.
    const tokens = await startTokenServer({ users: { bob: "builder" }, lifetime: 11 });
    const reg = await startRegistry({ token: tokens });
    const client = new RegistryClient(reg.host, { insecure: true, auth: staticAuth("bob", "builder") });
    try {
      const repo = client.repository("ci/expiring");
      const bytes = randomBytes(1000);
      await repo.pushBlob(bytes, { digest: sha256(bytes), size: bytes.length });
      await repo.headBlob(sha256(bytes));
      await repo.headBlob(sha256(bytes));
      const pulls = () =>
        tokens.issued.filter((t) => t.scopes.join() === "repository:ci/expiring:pull").length;
      assert.equal(pulls(), 1);
      await new Promise((r) => setTimeout(r, 1200));
      assert.deepEqual(await readAll(repo.openBlob(sha256(bytes))), bytes);
      assert.equal(pulls(), 2);
    } finally {
      await client.close();
      await reg.stop();
      await tokens.stop();
    }
  });
});
