/**
 * Done-when of the export module: the tree digest is the same for the image
 * (its rootfs tar), a dir export of it and a cpio export of it, read back by our
 * reader and extracted by bsdtar.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { promisify } from "node:util";
import { readCpio, writeCpio } from "../../src/export/cpio.js";
import { entriesFromTree } from "../../src/export/from-tree.js";
import { writeDirectory } from "../../src/export/safe-dir.js";
import { readTarFile } from "../../src/tar/index.js";
import { fromTar, scan, treeDigest } from "../../src/tree/index.js";
import { debianRootfsDir, debianRootfsTar } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);

test("tree digest: rootfs tar = dir export = cpio export (our reader) = cpio extracted by bsdtar", async () => {
  const rootfs = await debianRootfsDir("essential");
  const imageDigest = treeDigest(await fromTar(readTarFile(await debianRootfsTar("essential"))));
  const { tree } = await scan(rootfs);
  assert.equal(treeDigest(tree), imageDigest, "the scanned rootfs is the image");
  // The fixture has no xattrs, so cpio (which has none) can carry all of it.
  assert.ok([...tree.entries()].every(([, node]) => node.xattrs.length === 0));
  const entries = entriesFromTree(tree, (path) => ({ kind: "path", path: join(rootfs, path) }));

  await withTempDir(async (dir) => {
    const out = join(dir, "dir-export");
    const result = await writeDirectory(out, entries, { content: "copy", durable: false });
    assert.equal(result.copied + result.written, tree.hardlinkGroups().size + countUnlinkedFiles(entries));
    assert.equal(treeDigest((await scan(out)).tree), imageDigest, "dir export");

    const archive = join(dir, "rootfs.cpio");
    await pipeline(Readable.from(writeCpio(entries)), createWriteStream(archive));
    assert.equal(
      treeDigest(await fromTar(readCpio(createReadStream(archive)))),
      imageDigest,
      "cpio, our reader",
    );

    const bsd = join(dir, "bsdtar");
    await mkdir(bsd);
    await run("bsdtar", ["-xpf", archive, "--numeric-owner", "-C", bsd]);
    assert.equal(treeDigest((await scan(bsd)).tree), imageDigest, "cpio extracted by bsdtar");
  });
});

function countUnlinkedFiles(entries: ReturnType<typeof entriesFromTree>): number {
  const linked = new Set(entries.filter((e) => e.type === "hardlink").map((e) => e.linkTarget));
  return entries.filter((e) => e.type === "file" && !linked.has(e.path)).length;
}
