/**
 * `rootstock copy` and `tags` through the real CLI, between the store, OCI layouts
 * and a real docker-registry on 127.0.0.1, with skopeo and umoci reading what we wrote.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { rootstock } from "../helpers/cli.js";
import { startRegistry, type TestRegistry } from "../helpers/registry.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);

async function ok(args: string[]): Promise<string> {
  const r = await rootstock(args);
  assert.equal(r.code, 0, `rootstock ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

describe("rootstock copy", () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  test("store → layout (re-encoded gzip) → umoci and skopeo; → registry → mount → back, diff_id kept", async () => {
    await withTempDir(async (dir) => {
      const store = join(dir, "store");
      const tar = join(dir, "etc.tar");
      await run("tar", ["-cf", tar, "-C", "/etc", "."]);
      await ok(["--store", store, "-q", "import", tar, "store:etc:1"]);
      const original = JSON.parse(await ok(["--store", store, "--json", "inspect", "store:etc:1"]));

      // Re-encoded as gzip into a layout: skopeo reads it, umoci unpacks it to the same files.
      const layout = join(dir, "layout");
      const gz = JSON.parse(
        await ok([
          "--store",
          store,
          "--json",
          "-q",
          "copy",
          "--compression",
          "gzip",
          "store:etc:1",
          `oci:${layout}:gz`,
        ]),
      );
      assert.equal(gz.blobs.filter((b: { action: string }) => b.action === "re-encoded").length, 1);
      const { stdout: skopeo } = await run("skopeo", ["inspect", `oci:${layout}:gz`]);
      assert.equal(JSON.parse(skopeo).Digest, gz.digest);
      const viaLayout = JSON.parse(await ok(["--json", "inspect", `oci:${layout}:gz`]));
      assert.equal(viaLayout.layers[0].format, "gzip");
      assert.equal(viaLayout.layers[0].diffId, original.layers[0].diffId, "same tar, same diff_id");
      await run("umoci", ["unpack", "--rootless", "--image", `${layout}:gz`, join(dir, "bundle")]);
      const { stdout: diffOut } = await run("diff", [
        "-r",
        "--no-dereference",
        "/etc",
        join(dir, "bundle", "rootfs"),
      ]).catch((e) => e);
      assert.equal(diffOut, "", "umoci's unpack of our gzip layer equals /etc");

      // To the registry (zstd:chunked as stored); skopeo reads it there.
      const pushed = JSON.parse(
        await ok(["--store", store, "--json", "-q", "copy", "store:etc:1", `docker://${reg.host}/etc/a:1`]),
      );
      assert.equal(pushed.digest, original.digest, "an unchanged copy keeps the manifest digest");
      const { stdout: remote } = await run("skopeo", [
        "inspect",
        "--tls-verify=false",
        `docker://${reg.host}/etc/a:1`,
      ]);
      assert.equal(JSON.parse(remote).Digest, original.digest);

      // Registry → another repository of the same registry: blobs are mounted, not uploaded.
      const uploadsBefore = (await reg.accessLog()).filter(
        (l) => l.method === "PUT" && l.path.includes("/blobs/uploads/"),
      ).length;
      const mounted = JSON.parse(
        await ok(["--json", "-q", "copy", `docker://${reg.host}/etc/a:1`, `docker://${reg.host}/etc/b:1`]),
      );
      assert.ok(mounted.bytesMounted > 0, JSON.stringify(mounted));
      assert.equal(mounted.bytesSent, 0);
      const uploadsAfter = (await reg.accessLog()).filter(
        (l) => l.method === "PUT" && l.path.includes("/blobs/uploads/"),
      ).length;
      assert.equal(uploadsAfter, uploadsBefore, "no blob upload when mounting");

      // Back into a fresh store, then tags.
      const store2 = join(dir, "store2");
      await ok(["--store", store2, "-q", "copy", `docker://${reg.host}/etc/b:1`, "store:etc:back"]);
      const back = JSON.parse(await ok(["--store", store2, "--json", "inspect", "store:etc:back"]));
      assert.equal(back.digest, original.digest);
      assert.equal((await ok(["--store", store2, "-q", "store", "fsck"])).includes("clean"), true);
      assert.deepEqual(JSON.parse(await ok(["--json", "tags", `docker://${reg.host}/etc/a`])), ["1"]);
    });
  });

  test("import straight into a registry streams the layer (digest known only at its end)", async () => {
    await withTempDir(async (dir) => {
      const tar = join(dir, "etc.tar");
      await run("tar", ["-cf", tar, "-C", "/etc", "."]);
      const imported = JSON.parse(
        await ok(["--json", "-q", "import", tar, `docker://${reg.host}/direct/etc:1`]),
      );
      const { stdout } = await run("skopeo", [
        "inspect",
        "--tls-verify=false",
        `docker://${reg.host}/direct/etc:1`,
      ]);
      assert.equal(JSON.parse(stdout).Digest, imported.digest);
      assert.deepEqual(JSON.parse(stdout).Layers, [imported.layer.digest]);
    });
  });

  test("a missing tag at a registry is a one-line error with the registry's code", async () => {
    const r = await rootstock(["copy", `docker://${reg.host}/nothing/here:1`, "oci:/tmp/never-written"]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr.trim(), /^rootstock: .*(MANIFEST_UNKNOWN|NAME_UNKNOWN).*$/);
  });
});
