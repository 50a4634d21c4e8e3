/**
 * The overlapped archive writer: chunks written while the next are produced land in
 * order, buffers handed back are reused only once written (the file equals what was
 * produced, byte for byte), and a failing write is reported, not lost.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { OverlappedWriter } from "../../src/export/overlapped-writer.js";
import { withTempDir } from "../helpers/tmp.js";

it("writes every chunk at its place while buffers are reused, and makes few of them", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "out");
    const fd = openSync(path, "wx");
    const writer = new OverlappedWriter(fd, 64 * 1024, 2);
    const expected = createHash("sha256");
    const made = new Set<ArrayBufferLike>();
    let total = 0;
    for (let i = 0; i < 200; i++) {
      // Ring buffers (filled with a pattern that changes per chunk) and fresh chunks, mixed.
      const chunk = i % 3 === 0 ? Buffer.alloc(1000 + i, i) : await writer.buffer();
      if (i % 3 !== 0) {
        made.add(chunk.buffer);
        for (let j = 0; j < chunk.length; j++) chunk[j] = (i * 7 + j) & 0xff;
      }
      const part = i % 3 === 2 ? chunk.subarray(0, 5000) : chunk;
      expected.update(part);
      total += part.length;
      await writer.write(part);
    }
    await writer.end();
    closeSync(fd);
    const written = readFileSync(path);
    assert.equal(written.length, total);
    assert.equal(createHash("sha256").update(written).digest("hex"), expected.digest("hex"));
    assert.ok(made.size <= 3, `${made.size} buffers made for 133 ring chunks`);
  });
});

it("reports a write that fails", async () => {
  await withTempDir(async (dir) => {
    const fd = openSync(join(dir, "ro"), "wx");
    closeSync(fd);
    const readOnly = openSync(join(dir, "ro"), "r");
    const writer = new OverlappedWriter(readOnly, 1024, 2);
    await writer.write(Buffer.alloc(10));
    await assert.rejects(writer.end(), (e: NodeJS.ErrnoException) => e.code === "EBADF");
    closeSync(readOnly);
  });
});
