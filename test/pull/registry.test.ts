/**
 * pull from a real docker-registry on 127.0.0.1: growing Debian images (essential,
 * + 1 package, + 2 packages) fetch only the frames of changed files plus TOC and
 * tar-split (counted in the registry's access log, expected bytes computed from the
 * TOCs independently of the pull code), the store holds little more than the unique
 * file content, and the CLI reports what it fetched and reused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { du } from "../../src/cas/du.js";
import { fsck } from "../../src/cas/fsck.js";
import { ContentStore } from "../../src/cas/store.js";
import { copyImage } from "../../src/image/copy.js";
import { openEndpoint } from "../../src/image/endpoint.js";
import type { Digest } from "../../src/oci/digest.js";
import { parseReference } from "../../src/oci/reference.js";
import { pullImage } from "../../src/pull/pull.js";
import { openPullSource } from "../../src/pull/source.js";
import { rootstock } from "../helpers/cli.js";
import { blobBytesSince, startRegistry, type TestRegistry } from "../helpers/registry.js";
import { withTempDir } from "../helpers/tmp.js";
import { growingLayout, type LayerFacts, layerFacts } from "./fixtures.js";

const IMAGES = 3;

describe("pull from a registry", () => {
  let reg: TestRegistry;
  let layoutPath: string;
  const facts: LayerFacts[] = [];
  before(async () => {
    layoutPath = await growingLayout(IMAGES);
    reg = await startRegistry();
    for (let i = 0; i < IMAGES; i++) {
      facts.push(await layerFacts(layoutPath, `g${i}`));
      const src = await openEndpoint(parseReference(`oci:${layoutPath}:g${i}`), { storeDir: "/nonexistent" });
      const dst = await openEndpoint(parseReference(`docker://${reg.host}/growing:g${i}`), {
        storeDir: "/nonexistent",
      });
      await copyImage(src, dst, `g${i}`);
      await dst.close();
    }
  });
  after(async () => {
    await reg?.stop();
  });

  test("updates fetch only changed files' frames plus TOC and tar-split; the store holds unique content once", async (t) => {
    await withTempDir(async (dir) => {
      const storeDir = join(dir, "store");
      const store = await ContentStore.open(storeDir, { durability: "batch" });
      const seen = new Map<Digest, number>();
      for (let i = 0; i < IMAGES; i++) {
        const from = (await reg.accessLog()).length;
        const f = facts[i]!;
        let expected = f.metadataBytes;
        let changed = 0;
        for (const [digest, [size, compressed]] of f.files) {
          if (!seen.has(digest)) {
            expected += compressed;
            changed++;
          }
          seen.set(digest, size);
        }
        if (i < IMAGES - 1) {
          const r = await pullImage(
            await openPullSource(parseReference(`docker://${reg.host}/growing:g${i}`)),
            store,
            {
              destination: { repository: "growing", tag: `g${i}` },
            },
          );
          assert.equal(r.layers[0]?.action, i === 0 ? "full" : "partial");
        } else {
          // The last update through the CLI, which prints what it needed and reused.
          const out = await rootstock([
            "--store",
            storeDir,
            "--progress",
            "plain",
            "pull",
            `docker://${reg.host}/growing:g${i}`,
          ]);
          assert.equal(out.code, 0, out.stderr);
          assert.match(out.stderr, /files needed \d+ \([\d.]+ MB\) \/ reused \d+ \([\d.]+ MB\)/);
          assert.match(out.stdout, new RegExp(`store:${reg.host}/growing:g${i}`));
          assert.match(out.stdout, /files: fetched \d+ .*, reused \d+/);
        }
        const got = await blobBytesSince(reg, from, f.digest);
        // Every request answered: a config read through /manifests/ gets a 500 from
        // distribution, which cost seconds of retries.
        const failed = (await reg.accessLog()).slice(from).filter((e) => e.status >= 400);
        assert.deepEqual(
          failed.map((e) => `${e.method} ${e.path} ${e.status}`),
          [],
          `image ${i}: requests the registry refused`,
        );
        t.diagnostic(
          `image ${i}: fetched ${got.bytes} bytes in ${got.requests} GETs; changed files ${changed} + TOC/tar-split = ${expected} bytes (${(got.bytes / expected).toFixed(3)}x)`,
        );
        if (i === 0) continue;
        // After the first pull: at most 1.05x the changed files' frames + TOC + tar-split.
        assert.ok(
          got.bytes <= 1.05 * expected,
          `image ${i}: fetched ${got.bytes} bytes in ${got.requests} requests, changed files (${changed}) + metadata = ${expected}`,
        );
        assert.ok(
          got.bytes >= expected,
          `image ${i}: fetched ${got.bytes} < ${expected}: something was not fetched`,
        );
      }
      const unique = [...seen.values()].reduce((a, b) => a + b, 0);
      const usage = await du(store);
      const stored = usage.files.bytes + usage.blobs.bytes + usage.meta.bytes;
      t.diagnostic(
        `store ${stored} bytes for ${unique} bytes of unique file content (${(stored / unique).toFixed(3)}x)`,
      );
      assert.ok(
        stored <= 1.1 * unique,
        `store holds ${stored} bytes for ${unique} bytes of unique file content`,
      );
      assert.deepEqual((await fsck(store)).problems, []);
      const cli = await rootstock(["--store", storeDir, "store", "du"]);
      assert.match(cli.stdout, /layers: 3 recorded, .* dedup [\d.]+x/);
    });
  });
});
