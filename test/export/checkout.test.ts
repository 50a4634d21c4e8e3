/**
 * The cached checkout (src/export/checkout.ts): a hardlink dir export of an image
 * exported before is written straight from the cached tree and the farm. It must give
 * the tree the general writer gives (every kind of entry), decline whatever it cannot
 * do whole before writing anything, and treat a corrupt cache as the general writer
 * treats hostile entries: refused, nothing written inside or outside the target.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import {
  chmod,
  lchown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ContentStore } from "../../src/cas/store.js";
import { encodeLayer } from "../../src/compress/layer.js";
import { zstdCompress, zstdDecompress } from "../../src/compress/zstd.js";
import { isRootstockError } from "../../src/errors.js";
import { digestPath } from "../../src/export/digest.js";
import { type ExportResult, exportImage } from "../../src/export/export.js";
import { assembleImage, hostPlatform, writeImage } from "../../src/image/assemble.js";
import { openEndpoint } from "../../src/image/endpoint.js";
import type { Digest } from "../../src/oci/digest.js";
import { parseReference } from "../../src/oci/reference.js";
import { directoryContent, scan, treeAsLayer, treeDigest, writeLayer } from "../../src/tree/index.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);
const root = process.getuid?.() === 0;
const REF = "store:checkout:test";

/** A root filesystem with every kind of entry the checkout writes itself or links. */
async function makeRootfs(dir: string): Promise<void> {
  await mkdir(join(dir, "tmp"));
  await chmod(join(dir, "tmp"), 0o1777);
  await mkdir(join(dir, "root"), { mode: 0o700 });
  await mkdir(join(dir, "usr/bin"), { recursive: true });
  await mkdir(join(dir, "srv/shared"), { recursive: true });
  await chmod(join(dir, "srv/shared"), 0o2775);
  await writeFile(join(dir, "usr/bin/su"), "#!/bin/sh\n");
  await chmod(join(dir, "usr/bin/su"), 0o4755);
  await link(join(dir, "usr/bin/su"), join(dir, "usr/bin/su-alias"));
  await writeFile(join(dir, "usr/bin/empty"), "");
  await link(join(dir, "usr/bin/empty"), join(dir, "usr/bin/empty-alias"));
  // Equal content and metadata, separate inodes: they must stay separate.
  for (const name of ["same-a", "same-b"]) {
    await writeFile(join(dir, "srv", name), "identical\n");
    await utimes(join(dir, "srv", name), 1_700_000_000, 1_700_000_000);
  }
  await writeFile(join(dir, "srv/tagged"), "with an xattr\n");
  await run("setfattr", ["-n", "user.rootstock", "-v", "checkout", join(dir, "srv/tagged")]);
  await run("mkfifo", [join(dir, "srv/fifo")]);
  await symlink("../srv/same-a", join(dir, "usr/link"));
  await symlink("/nonexistent/absolute", join(dir, "usr/dangling"));
  if (root) {
    await writeFile(join(dir, "srv/owned"), "someone else's\n");
    await lchown(join(dir, "srv/owned"), 1234, 2345);
    await lchown(join(dir, "usr/link"), 1234, 2345);
    await lchown(join(dir, "srv/shared"), 1234, 2345);
  }
  await utimes(join(dir, "usr"), 1_600_000_000, 1_600_000_000);
}

async function setup(dir: string, owner?: number): Promise<{ storeDir: string; want: Digest }> {
  const src = join(dir, "src");
  await mkdir(src);
  await makeRootfs(src);
  if (owner !== undefined) await run("chown", ["-R", "-h", `${owner}:${owner}`, src]);
  const tree = (await scan(src)).tree;
  const storeDir = join(dir, "store");
  const dest = await openEndpoint(parseReference(REF), { storeDir });
  const { blob, result } = encodeLayer(writeLayer(treeAsLayer(tree), directoryContent(src)), {
    compression: "zstd:chunked",
  });
  await dest.put(blob);
  await writeImage(dest, assembleImage({ platform: hostPlatform(), layers: [await result] }), "test");
  await dest.close();
  return { storeDir, want: treeDigest(tree) };
}

async function exportDir(storeDir: string, output: string, extra = {}): Promise<ExportResult> {
  const source = await openEndpoint(parseReference(REF), { storeDir });
  try {
    const store = await ContentStore.open(storeDir, { durability: "batch" });
    return await exportImage(source, store, { format: "dir", output, durable: false, ...extra });
  } finally {
    await source.close();
  }
}

test("the second dir export is a cached checkout with the same tree as the general writer's", async () => {
  await withTempDir(async (dir) => {
    const { storeDir, want } = await setup(dir);
    const first = await exportDir(storeDir, join(dir, "first"));
    const second = await exportDir(storeDir, join(dir, "second"));
    assert.equal(first.dir?.cachedCheckout, false);
    assert.equal(second.dir?.cachedCheckout, true);
    assert.equal(second.dir?.farm.made, 0);
    assert.deepEqual(second.inventory, first.inventory, "the inventory comes from the cache");
    for (const out of ["first", "second"]) {
      assert.equal((await digestPath(join(dir, out))).treeDigest, want, out);
    }
    assert.equal(second.treeDigest, want);
    const out = join(dir, "second");
    const ino = async (p: string) => (await lstat(join(out, p))).ino;
    assert.equal(await ino("usr/bin/su"), await ino("usr/bin/su-alias"), "hard link kept");
    assert.equal(await ino("usr/bin/empty"), await ino("usr/bin/empty-alias"), "empty hard link kept");
    assert.notEqual(await ino("srv/same-a"), await ino("srv/same-b"), "separate files stay separate");
    assert.equal(await ino("srv/tagged"), (await lstat(join(dir, "first", "srv/tagged"))).ino, "farm shared");
    assert.equal((await lstat(join(out, "tmp"))).mode & 0o7777, 0o1777);
    assert.equal((await lstat(join(out, "usr"))).mtimeMs, 1_600_000_000_000);
    assert.ok((await lstat(join(out, "srv/fifo"))).isFIFO());
    if (root) assert.equal((await lstat(join(out, "usr/link"))).uid, 1234);
    assert.ok(!existsSync(`${out}.rootstock-partial`));
  });
});

test("the cached checkout declines what it cannot do whole, and the general writer does it", async () => {
  await withTempDir(async (dir) => {
    const { storeDir, want } = await setup(dir);
    await exportDir(storeDir, join(dir, "first"));
    // An existing (empty) target is written in place by the general writer.
    await mkdir(join(dir, "existing"));
    const inPlace = await exportDir(storeDir, join(dir, "existing"));
    assert.equal(inPlace.dir?.cachedCheckout, false);
    assert.equal((await digestPath(join(dir, "existing"))).treeDigest, want);
    // So is a leftover partial directory (with --force): the general writer clears it.
    await mkdir(join(dir, "again.rootstock-partial"));
    const cleared = await exportDir(storeDir, join(dir, "again"), { force: true });
    assert.equal(cleared.dir?.cachedCheckout, false);
    assert.equal((await digestPath(join(dir, "again"))).treeDigest, want);
    // A missing parent is reported as the general writer reports it.
    await assert.rejects(
      exportDir(storeDir, join(dir, "missing", "out")),
      (e) => isRootstockError(e, "NOT_FOUND") && /parent directory does not exist/.test(e.message),
    );
    // Another filesystem than the farm's (tmpfs): the general writer copies.
    const shm = await stat("/dev/shm").catch(() => undefined);
    if (shm && shm.dev !== (await stat(storeDir)).dev) {
      const elsewhere = await mkdtemp("/dev/shm/rootstock-checkout-");
      try {
        const copied = await exportDir(storeDir, join(elsewhere, "out"));
        assert.equal(copied.dir?.cachedCheckout, false);
        assert.ok((copied.dir?.copied ?? 0) > 0, "copies, not links across filesystems");
        assert.equal((await digestPath(join(elsewhere, "out"))).treeDigest, want);
      } finally {
        await rm(elsewhere, { recursive: true, force: true });
      }
    }
    // A farm object gone (gc pruned it): made again by the general path.
    const { pruneFarm } = await import("../../src/export/farm.js");
    for (const d of ["first", "existing", "again"]) await rm(join(dir, d), { recursive: true });
    assert.ok(pruneFarm(storeDir).removed > 0);
    const remade = await exportDir(storeDir, join(dir, "remade"));
    assert.equal(remade.dir?.cachedCheckout, false);
    assert.ok((remade.dir?.farm.made ?? 0) > 0);
    assert.equal((await digestPath(join(dir, "remade"))).treeDigest, want);
  });
});

test("a corrupt cached tree (an entry under a symlink) is refused and writes nothing anywhere", async () => {
  await withTempDir(async (dir) => {
    const { storeDir } = await setup(dir);
    await exportDir(storeDir, join(dir, "first"));
    // Rewrite the image's cached rows: a symlink to a directory outside, then a file "in" it.
    const store = await ContentStore.open(storeDir);
    const source = await openEndpoint(parseReference(REF), { storeDir });
    const manifest = (await source.resolveRoot()).digest;
    await source.close();
    const doc = await store.getMeta<{ rows: { digest: Digest; size: number } }>(manifest);
    assert.ok(doc, "the first export cached the tree");
    const rows = JSON.parse(
      Buffer.from(zstdDecompress(await store.readBlob(doc.data.rows, 1 << 30), "rows")).toString(),
    ) as unknown[][];
    const file = rows.find((r) => r[0] === "srv/same-a")!;
    const outside = join(dir, "outside");
    await mkdir(outside);
    rows.push(["zz", "symlink", 0o777, 0, 0, 0, 0, 0, "", outside, 0, 0, [], -1, ""]);
    rows.push(["zz/escaped", ...file.slice(1)]);
    const blob = await store.putBlob(zstdCompress(Buffer.from(JSON.stringify(rows)), 3));
    await store.putMeta(manifest, { blobs: [blob.digest], data: { ...doc.data, rows: blob } });
    const target = join(dir, "evil");
    await assert.rejects(
      exportDir(storeDir, target),
      (e) => isRootstockError(e, "STORE_CORRUPT") && e.message.includes("zz/escaped"),
    );
    assert.deepEqual(await readdir(outside), [], "nothing written through the symlink");
    assert.ok(!existsSync(target) && !existsSync(`${target}.rootstock-partial`), "no target, no partial");
  });
});

test("as an unprivileged user the cached checkout gives the general writer's tree and skipped list", async (t) => {
  if (!root) return t.skip("needs root to switch to nobody");
  await withTempDir(async (dir) => {
    const nobody = 65534;
    const { storeDir, want } = await setup(dir, nobody);
    await run("chown", ["-R", `${nobody}:${nobody}`, dir]);
    const script = fileURLToPath(new URL("./checkout-as-user.ts", import.meta.url));
    const [first, second] = [join(dir, "first"), join(dir, "second")];
    const { stdout } = await run("setpriv", [
      `--reuid=${nobody}`,
      `--regid=${nobody}`,
      "--clear-groups",
      process.execPath,
      "--import",
      "tsx",
      script,
      storeDir,
      first,
      second,
    ]);
    const results = JSON.parse(stdout) as Array<Pick<ExportResult, "dir" | "treeDigest">>;
    assert.deepEqual(
      results.map((r) => r.dir?.cachedCheckout),
      [false, true],
    );
    // The image's root directory is root's (an implied directory): as non-root, both
    // writers skip that owner alone, and list it.
    for (const r of results) {
      assert.equal(r.treeDigest, want);
      assert.deepEqual(
        r.dir?.skipped.map((x) => `${x.what} ${x.path}: ${x.reason}`),
        ["owner .: owner 0:0 needs root"],
      );
    }
    assert.ok((results[0]!.dir?.farm.made ?? 0) > 0 && results[1]!.dir?.farm.made === 0);
    assert.equal((await digestPath(second)).treeDigest, (await digestPath(first)).treeDigest, "same tree");
    assert.equal((await lstat(join(second, "srv/owned"))).uid, nobody);
    assert.equal((await lstat(join(second, "usr/bin/empty"))).uid, nobody);
  });
});
