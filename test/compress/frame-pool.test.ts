/**
 * The frame pool's buffer handling: inputs are copied at submit (the caller may reuse
 * its buffer at once), output buffers released by the consumer come back for later
 * batches, and none of it changes a byte of the blob.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { encodeChunked } from "../../src/compress/chunked-writer.js";
import { FramePool } from "../../src/compress/frame-pool.js";
import { zstdDecompress } from "../../src/compress/zstd.js";
import { writeTar } from "../../src/tar/index.js";
import { regularFileHeader } from "../helpers/tar.js";

/** A tar of files from 0 bytes to 3 MiB, half random (incompressible), half text-like. */
async function sampleTar(): Promise<Uint8Array> {
  const items = [];
  for (let i = 0; i < 160; i++) {
    const size = i % 16 === 0 ? 3 * 1024 * 1024 - i : (i * 7919) % 90_000;
    const payload =
      i % 2 === 0
        ? randomBytes(size)
        : Buffer.from(`line ${i} of a text file\n`.repeat(size / 20 + 1)).subarray(0, size);
    items.push({ header: regularFileHeader(`dir/file-${i}`, size), payload: new Uint8Array(payload) });
  }
  const parts: Uint8Array[] = [];
  for await (const chunk of writeTar(items)) parts.push(chunk.slice());
  return Buffer.concat(parts);
}

/** Chunks of `tar` in one reused buffer: each is overwritten as soon as the next is asked for. */
async function* recycledChunks(tar: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  const buffer = new Uint8Array(size);
  for (let pos = 0; pos < tar.length; pos += size) {
    const n = Math.min(size, tar.length - pos);
    buffer.set(tar.subarray(pos, pos + n));
    yield buffer.subarray(0, n);
    buffer.fill(0xee);
  }
}

/** Encodes and collects the blob; with `reuseOutput` each chunk is copied before the next is asked for. */
async function encode(tar: Uint8Array, reuseOutput: boolean): Promise<{ blob: Uint8Array; diffId: string }> {
  const { blob, result } = encodeChunked(recycledChunks(tar, 64 * 1024 + 3), {
    level: 3,
    chunking: false,
    reuseOutput,
  });
  const parts: Uint8Array[] = [];
  for await (const chunk of blob) parts.push(reuseOutput ? chunk.slice() : chunk);
  return { blob: Buffer.concat(parts), diffId: (await result).diffId };
}

describe("frame pool buffers", () => {
  it("copies a job's data at submit: overwriting it right after changes nothing", async () => {
    const pool = new FramePool({ level: 3, threads: 2 });
    try {
      const inputs = Array.from({ length: 40 }, (_, i) => randomBytes(10_000 + i * 997));
      const scratch = new Uint8Array(80_000);
      const outputs = inputs.map((input) => {
        scratch.set(input);
        const out = pool.submit({ kind: "raw", data: scratch.subarray(0, input.length) });
        scratch.fill(0);
        return out;
      });
      pool.flush();
      for (const [i, out] of outputs.entries()) {
        const frame = await out;
        assert.deepEqual(Buffer.from(zstdDecompress(frame.bytes, `job ${i}`)), inputs[i]);
      }
    } finally {
      await pool.close();
    }
  });

  it("a blob encoded with released (reused) output buffers equals one without, byte for byte", async () => {
    const tar = await sampleTar();
    const reused = await encode(tar, true);
    const plain = await encode(tar, false);
    assert.equal(reused.diffId, `sha256:${createHash("sha256").update(tar).digest("hex")}`);
    assert.equal(reused.blob.length, plain.blob.length);
    assert.ok(Buffer.from(reused.blob).equals(Buffer.from(plain.blob)), "blobs differ");
    assert.ok(Buffer.from(zstdDecompress(reused.blob, "blob")).equals(Buffer.from(tar)), "not the input tar");
  });
});
