import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import { RegistryClient, staticAuth } from "../../src/remote/index.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";
import { withTempDir } from "../helpers/tmp.js";
import { startTokenServer } from "../helpers/token-server.js";
import { makeImage, readAll, type TestImage } from "./image.js";

const run = promisify(execFile);

async function pushImage(client: RegistryClient, repoName: string, image: TestImage, tag: string) {
  const repo = client.repository(repoName);
  for (const blob of [image.config, ...image.layers]) await repo.pushBlob(blob.bytes, blob);
  return repo.putManifest(tag, image.manifest.bytes, MediaType.OciManifest);
}

describe("interoperability with skopeo", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient(reg.host, { insecure: true, env: {} });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  it("skopeo inspects and copies what we pushed", async () => {
    await withTempDir(async (dir) => {
      const image = await makeImage(dir, [{ "etc.txt": "one\n" }, { "usr.bin": randomBytes(200_000) }]);
      const digest = await pushImage(client, "interop/ours", image, "v1");
      const { stdout } = await run("skopeo", [
        "inspect",
        "--tls-verify=false",
        `docker://${reg.host}/interop/ours:v1`,
      ]);
      const inspected = JSON.parse(stdout) as { Digest: string; Layers: string[] };
      assert.equal(inspected.Digest, digest);
      assert.deepEqual(
        inspected.Layers,
        image.layers.map((l) => l.digest),
      );
      const out = join(dir, "oci-out");
      await run("skopeo", [
        "copy",
        "--src-tls-verify=false",
        `docker://${reg.host}/interop/ours:v1`,
        `oci:${out}:v1`,
      ]);
      for (const blob of [image.config, ...image.layers, image.manifest]) {
        const bytes = await readFile(join(out, "blobs", "sha256", blob.digest.slice(7)));
        assert.equal(sha256(bytes), blob.digest);
      }
    });
  });

  it("we pull what skopeo pushed", async () => {
    await withTempDir(async (dir) => {
      const image = await makeImage(dir, [
        { "hello.txt": "from skopeo\n" },
        { "data.bin": randomBytes(300_000) },
      ]);
      const layout = join(dir, "layout");
      await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
      for (const blob of [image.config, ...image.layers, image.manifest]) {
        await writeFile(join(layout, "blobs", "sha256", blob.digest.slice(7)), blob.bytes);
      }
      await writeFile(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(
        join(layout, "index.json"),
        JSON.stringify({
          schemaVersion: 2,
          manifests: [
            {
              mediaType: MediaType.OciManifest,
              digest: image.manifest.digest,
              size: image.manifest.size,
              annotations: { "org.opencontainers.image.ref.name": "v1" },
            },
          ],
        }),
      );
      await run("skopeo", [
        "copy",
        "--dest-tls-verify=false",
        `oci:${layout}:v1`,
        `docker://${reg.host}/interop/theirs:v1`,
      ]);
      const repo = client.repository("interop/theirs");
      const manifest = await repo.getManifest("v1");
      const parsed = JSON.parse(Buffer.from(manifest.bytes).toString()) as {
        config: { digest: `sha256:${string}`; size: number };
        layers: { digest: `sha256:${string}`; size: number }[];
      };
      assert.deepEqual(
        parsed.layers.map((l) => l.digest),
        image.layers.map((l) => l.digest),
      );
      for (const d of [parsed.config, ...parsed.layers]) {
        const bytes = await readAll(repo.openBlob(d.digest, { size: d.size }));
        assert.equal(sha256(bytes), d.digest);
      }
    });
  });
});

describe("through a pull-through cache (docker-registry proxy of another instance)", () => {
  let upstream: TestRegistry;
  let proxy: TestRegistry;
  let client: RegistryClient;
  before(async () => {
    upstream = await startRegistry();
    proxy = await startRegistry({ proxyOf: upstream.url });
  });
  after(async () => {
    await client?.close();
    await proxy?.stop();
    await upstream?.stop();
  });

  it("pulls manifests and blobs, and ranged reads whether the cache answers 200 or 206", async () => {
    await withTempDir(async (dir) => {
      const big = randomBytes(400_000);
      const image = await makeImage(dir, [{ "big.bin": big }]);
      const up = new RegistryClient(upstream.host, { insecure: true, env: {} });
      await pushImage(up, "library/app", image, "v1");
      await up.close();

      client = new RegistryClient(proxy.host, { insecure: true, env: {} });
      const repo = client.repository("library/app");
      const manifest = await repo.getManifest("v1");
      assert.equal(manifest.digest, image.manifest.digest);
      const layer = image.layers[0]!;
      const ranges = [
        { offset: 0, length: 512 },
        { offset: 100_000, length: 1000 },
        { offset: layer.size - 10, length: 10 },
      ];
      const before = (await proxy.accessLog()).length;
      // The proxy fills its cache in the background: ask until it answers from the cache.
      const statuses = async () =>
        (await proxy.accessLog())
          .slice(before)
          .filter((e) => e.path.includes(layer.digest))
          .map((e) => e.status);
      for (let round = 0; round < 50; round++) {
        const got = [];
        for await (const r of repo.getBlobRanges(layer.digest, ranges, { mergeGap: 0 })) got.push(r);
        assert.equal(got.length, 3);
        for (const { range, bytes } of got) {
          assert.deepEqual(
            Buffer.from(bytes),
            Buffer.from(layer.bytes.subarray(range.offset, range.offset + range.length)),
          );
        }
        if ((await statuses()).includes(206)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      // Not cached yet: the whole blob (200); cached: multipart (206).
      const seen = await statuses();
      assert.equal(seen[0], 200);
      assert.equal(seen[seen.length - 1], 206);
      assert.ok(seen.every((s) => s === 200 || s === 206));
      assert.equal(sha256(await readAll(repo.openBlob(layer.digest, { size: layer.size }))), layer.digest);
      assert.equal(sha256(await readAll(repo.openBlob(image.config.digest))), image.config.digest);
    });
  });
});

describe("interoperability behind bearer tokens", () => {
  it("skopeo, with the same credentials, copies what we pushed to a token-auth registry", async () => {
    const tokens = await startTokenServer({ users: { ci: "t0ken" } });
    const reg = await startRegistry({ token: tokens });
    const client = new RegistryClient(reg.host, { insecure: true, auth: staticAuth("ci", "t0ken") });
    try {
      await withTempDir(async (dir) => {
        const image = await makeImage(dir, [{ "f.txt": "behind a token\n" }]);
        const digest = await pushImage(client, "secure/app", image, "v1");
        const out = join(dir, "oci-out");
        await run("skopeo", [
          "copy",
          "--src-tls-verify=false",
          "--src-creds=ci:t0ken",
          `docker://${reg.host}/secure/app:v1`,
          `oci:${out}:v1`,
        ]);
        const index = JSON.parse(await readFile(join(out, "index.json"), "utf8")) as {
          manifests: { digest: string }[];
        };
        assert.equal(index.manifests[0]!.digest, digest);
        assert.ok(
          tokens.issued.some(
            (t) => t.account === "ci" && t.scopes.includes("repository:secure/app:pull,push"),
          ),
        );
      });
    } finally {
      await client.close();
      await reg.stop();
      await tokens.stop();
    }
  });
});
