/**
 * The file-object writer thread: contents given in parts of any size (split across
 * batches) come back as the right digests and CRC-64s, land as verified objects
 * once, and a failing write surfaces as the fs error with nothing half-stored.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fsck } from "../../src/cas/fsck.js";
import { ContentStore } from "../../src/cas/store.js";
import { crc64 } from "../../src/compress/crc64.js";
import { FileObjectWriter, type WriterResult } from "../../src/layers/file-writer.js";
import { sha256 } from "../../src/oci/digest.js";
import { withTempDir } from "../helpers/tmp.js";

const MB = 1024 * 1024;

/** Feeds `content` to the writer in parts of `partSize` bytes. */
function feed(writer: FileObjectWriter, content: Uint8Array, partSize: number): Promise<WriterResult> {
  const id = writer.newFile();
  let done: Promise<WriterResult> | undefined;
  for (let at = 0; at < content.length; at += partSize) {
    const end = Math.min(content.length, at + partSize);
    done = writer.write(id, content.subarray(at, end), at === 0, end === content.length);
  }
  assert.ok(done, "the final part returns the result");
  return done;
}

test("files of every size, whole or in parts, become verified objects with their digest and CRC-64", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(join(dir, "store"), { durability: "batch" });
    const writer = new FileObjectWriter(store, 4 * MB);
    const contents = [1, 100, MB - 1, MB, MB + 1, 3.5 * MB, 9 * MB].map((n) => randomBytes(Math.floor(n)));
    try {
      const results = await Promise.all(
        contents.map((c, i) => feed(writer, c, i % 2 === 0 ? c.length : 300_001)),
      );
      for (const [i, r] of results.entries()) {
        const c = contents[i]!;
        assert.equal(r.digest, sha256(c));
        assert.equal(r.size, c.length);
        assert.deepEqual(Buffer.from(r.crc), Buffer.from(crc64(c)));
        assert.equal(r.existed, false);
        assert.deepEqual(await readFile(store.filePath(r.digest)), c);
      }
      // The same contents again: found, not written twice.
      const again = await Promise.all(contents.map((c) => feed(writer, c, 2 * MB)));
      assert.deepEqual(
        again.map((r) => r.existed),
        contents.map(() => true),
      );
    } finally {
      await writer.close();
    }
    assert.deepEqual(await readdir(join(dir, "store", "ingest")), [], "no ingest file left");
    assert.deepEqual((await fsck(store)).problems, []);
  });
});

test("a write the OS refuses rejects with its error and leaves nothing in ingest", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(join(dir, "store"), { durability: "batch" });
    // The object fan-out cannot be made: files/sha256 is a regular file.
    await rm(join(dir, "store", "files", "sha256"), { recursive: true });
    await writeFile(join(dir, "store", "files", "sha256"), "not a directory\n");
    const writer = new FileObjectWriter(store);
    try {
      await assert.rejects(feed(writer, randomBytes(1000), 1000), (err: NodeJS.ErrnoException) => {
        assert.match(err.message, /^writing file objects: /);
        assert.ok(err.code === "ENOTDIR" || err.code === "EEXIST", String(err.code));
        return true;
      });
      // Later writes fail at once instead of hanging.
      assert.throws(
        () => writer.write(writer.newFile(), randomBytes(10), true, true),
        /writing file objects/,
      );
    } finally {
      await writer.close();
    }
    assert.deepEqual(await readdir(join(dir, "store", "ingest")), [], "no ingest file left");
  });
});
