/**
 * The foundation issue's end-to-end promises, through the real CLI: import a real
 * Debian root filesystem, fsck clean, idempotent re-import, one-line errors that
 * leave the store unchanged, and a SIGKILLed import that a retry completes.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { rootstock, rootstockKilledAfter } from "../helpers/cli.js";
import { debianRootfsTar } from "../helpers/fixtures.js";
import { smallTarball } from "../helpers/tar.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);

/** Every file under `dir` with its size: a store "unchanged" means this is equal. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(`${p.slice(dir.length)} ${(await stat(p)).size}`);
    }
  };
  await walk(dir);
  return out.sort();
}

function oneLineError(stderr: string): string {
  const lines = stderr
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("rootstock: "));
  assert.equal(lines.length, 1, `expected one error line, got:\n${stderr}`);
  return lines[0]!;
}

describe("rootstock import of a real Debian root filesystem", () => {
  test("import, inspect, ls, fsck clean; a second import stores nothing new", async () => {
    const tar = await debianRootfsTar("essential");
    await withTempDir(async (dir) => {
      const store = join(dir, "store");
      const first = await rootstock([
        "--store",
        store,
        "--json",
        "-q",
        "import",
        tar,
        "store:debian:essential",
      ]);
      assert.equal(first.code, 0, first.stderr);
      const summary = JSON.parse(first.stdout);
      assert.equal(summary.layerExisted, false);
      assert.match(summary.treeDigest, /^sha256:[0-9a-f]{64}$/);
      // The inventory agrees with GNU tar's own listing of the archive.
      const { stdout: listing } = await run("tar", ["-tvf", tar], { maxBuffer: 64 << 20 });
      const kinds = listing
        .split("\n")
        .filter(Boolean)
        .map((l) => l[0]);
      assert.equal(summary.inventory.dirs + 1, kinds.filter((k) => k === "d").length, "dirs (+ the root ./)");
      assert.equal(summary.inventory.symlinks, kinds.filter((k) => k === "l").length);
      assert.equal(summary.inventory.hardlinks, kinds.filter((k) => k === "h").length);
      assert.equal(summary.inventory.devices, kinds.filter((k) => k === "c" || k === "b").length);
      assert.equal(summary.inventory.files, kinds.filter((k) => k === "-").length);
      assert.equal(summary.layer.uncompressedSize, (await stat(tar)).size);

      const inspect = await rootstock(["--store", store, "--json", "inspect", "store:debian:essential"]);
      assert.equal(inspect.code, 0, inspect.stderr);
      const image = JSON.parse(inspect.stdout);
      assert.equal(image.digest, summary.digest);
      assert.equal(image.layers.length, 1);
      assert.equal(image.layers[0].format, "zstd:chunked");
      assert.equal(image.layers[0].diffId, summary.layer.diffId);

      // The layer's TOC mirrors the archive, entry for entry, in order.
      const toc = await rootstock(["--store", store, "--json", "inspect", "store:debian:essential", "--toc"]);
      assert.equal(toc.code, 0, toc.stderr);
      const names = JSON.parse(toc.stdout)
        .entries.filter((e: { type: string }) => e.type !== "chunk")
        .map((e: { name: string }) => e.name);
      const { stdout: tarNames } = await run("tar", ["-tf", tar], { maxBuffer: 64 << 20 });
      assert.deepEqual(names, tarNames.split("\n").filter(Boolean));

      const ls = await rootstock(["--store", store, "store", "ls"]);
      assert.match(ls.stdout, /store:debian:essential/);
      const fsck = await rootstock(["--store", store, "-q", "store", "fsck"]);
      assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
      assert.match(fsck.stdout, /clean/);

      const before = await snapshot(join(store, "blobs"));
      const again = await rootstock(["--store", store, "--json", "-q", "import", tar, "store:debian:again"]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(JSON.parse(again.stdout).layerExisted, true);
      assert.equal(JSON.parse(again.stdout).digest, summary.digest, "same tarball, same image digest");
      assert.deepEqual(await snapshot(join(store, "blobs")), before, "no new blob");
    });
  });

  test("bad tarballs give one line, a non-zero exit, and leave the store unchanged", async () => {
    const tar = await debianRootfsTar("essential");
    await withTempDir(async (dir) => {
      const store = join(dir, "store");
      await rootstock(["--store", store, "-q", "store", "ls"]); // creates the empty store
      const good = join(dir, "good.tar");
      await run("tar", ["-cf", good, "-C", "/usr/share/doc", "bash", "coreutils"]).catch(async () => {
        await run("tar", ["-cf", good, "-C", "/etc", "."]);
      });
      const empty = await snapshot(store);

      const truncated = join(dir, "truncated.tar");
      await copyFile(tar, truncated);
      await truncate(truncated, Math.floor((await stat(tar)).size / 3) + 100);
      let r = await rootstock(["--store", store, "-q", "import", truncated, "store:bad:truncated"]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(oneLineError(r.stderr), /truncat|unexpected end|short/i);
      assert.deepEqual(await snapshot(store), empty);

      const badsum = join(dir, "badsum.tar");
      const bytes = Buffer.from(await readFile(good));
      bytes[148] = bytes[148] === 0x31 ? 0x32 : 0x31; // first header's checksum field
      await writeFile(badsum, bytes);
      r = await rootstock(["--store", store, "-q", "import", badsum, "store:bad:checksum"]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(oneLineError(r.stderr), /checksum/i);
      assert.deepEqual(await snapshot(store), empty);

      r = await rootstock(["--store", store, "-q", "import", join(dir, "missing.tar"), "store:bad:missing"]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(oneLineError(r.stderr), /^rootstock: tarball \S*missing\.tar: no such file$/);
      assert.deepEqual(await snapshot(store), empty);

      r = await rootstock(["--store", store, "-q", "import", dir, "store:bad:directory"]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(oneLineError(r.stderr), /^rootstock: tarball \S+: not a regular file$/);
      assert.deepEqual(await snapshot(store), empty);
    });
  });

  test("a blob whose bytes don't match its digest is caught by fsck and by readers", async () => {
    await withTempDir(async (dir) => {
      const store = join(dir, "store");
      const tar = join(dir, "small.tar");
      await run("tar", ["-cf", tar, "-C", "/etc", "."]);
      assert.equal((await rootstock(["--store", store, "-q", "import", tar, "store:small:1"])).code, 0);
      // Corrupt the config blob (small, read by inspect).
      const inspect = JSON.parse(
        (await rootstock(["--store", store, "--json", "inspect", "store:small:1", "--raw"])).stdout,
      );
      const configHex = inspect.config.digest.slice(7);
      const configPath = join(store, "blobs", "sha256", configHex);
      await chmod(configPath, 0o644);
      const doc = Buffer.from(await readFile(configPath));
      doc[doc.length - 3] = (doc[doc.length - 3] ?? 0) ^ 0x01;
      await writeFile(configPath, doc);
      await chmod(configPath, 0o444);

      const fsck = await rootstock(["--store", store, "-q", "store", "fsck"]);
      assert.equal(fsck.code, 4);
      assert.match(fsck.stdout, new RegExp(`corrupt-object.*${configHex.slice(0, 12)}`));
      const r = await rootstock(["--store", store, "inspect", "store:small:1"]);
      assert.equal(r.code, 4);
      assert.match(oneLineError(r.stderr), /hashes to|digest/);
    });
  });

  test("a malformed index.json in an OCI layout is a one-line error naming the field", async () => {
    await withTempDir(async (dir) => {
      const layout = join(dir, "layout");
      await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
      await writeFile(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(
        join(layout, "index.json"),
        '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:nothex","size":1}]}',
      );
      const r = await rootstock(["inspect", `oci:${layout}`]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(oneLineError(r.stderr), /manifests\[0\]\.digest/);
    });
  });

  test("an import SIGKILLed at random moments leaves a store fsck finds clean, and a retry completes", async () => {
    const tar = await debianRootfsTar("essential");
    await withTempDir(async (dir) => {
      const store = join(dir, "store");
      // Spread the kills over the import's life: early (encoding), middle, late (writing refs).
      for (const ms of [
        300 + Math.random() * 700,
        1500 + Math.random() * 2000,
        4000 + Math.random() * 4000,
      ]) {
        const killed = await rootstockKilledAfter(
          ["--store", store, "-q", "import", "--fast", tar, "store:debian:killed"],
          Math.round(ms),
        );
        const fsck = await rootstock(["--store", store, "-q", "--json", "store", "fsck"]);
        assert.equal(
          fsck.code,
          0,
          `after a kill at ${Math.round(ms)} ms (${killed.signal ?? killed.code}): ${fsck.stdout}`,
        );
        assert.equal(JSON.parse(fsck.stdout).clean, true);
      }
      const retry = await rootstock([
        "--store",
        store,
        "-q",
        "--json",
        "import",
        "--fast",
        tar,
        "store:debian:killed",
      ]);
      assert.equal(retry.code, 0, retry.stderr);
      const fsck = await rootstock(["--store", store, "-q", "store", "fsck"]);
      assert.equal(fsck.code, 0, fsck.stdout);
      const gc = await rootstock(["--store", store, "-q", "--json", "store", "gc"]);
      assert.equal(gc.code, 0, gc.stderr);
      assert.equal(JSON.parse(gc.stdout).ingest.count >= 0, true);
      assert.equal((await rootstock(["--store", store, "-q", "--json", "store", "du"])).code, 0);
    });
  });
  test("run from the TypeScript sources in a directory outside the package, its workers start too", async () => {
    await withTempDir(async (dir) => {
      await smallTarball(dir, "hello\n".repeat(5000));
      // ROOTSTOCK_FROM_SOURCE: what runs when dist/ is stale; the encode spawns compression workers.
      const result = await rootstock(
        ["--store", join(dir, "store"), "-q", "import", "small.tar", "store:small:1"],
        {
          cwd: dir,
          env: { ROOTSTOCK_FROM_SOURCE: "1" },
        },
      );
      assert.equal(result.code, 0, result.stderr);
    });
  });
});
