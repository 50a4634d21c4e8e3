/**
 * Bounded memory: a 4 GiB file entry streams through writer → reader → writer (re-emit)
 * into a checksum sink while resident memory stays flat.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { crc32 } from "node:zlib";
import { readTar, reemitTar, writeTar } from "../../src/tar/index.js";
import { regularFileHeader } from "../helpers/tar.js";

const GiB = 1024 ** 3;

it("streams a 4 GiB entry with flat RSS", async () => {
  const size = 4 * GiB + 1000; // not block-aligned, so the trailer carries padding
  const header = regularFileHeader("huge.img", size);
  const zeros = new Uint8Array(1 << 20);
  async function* payload() {
    for (let left = size; left > 0; left -= zeros.length)
      yield zeros.subarray(0, Math.min(left, zeros.length));
  }
  let inputCrc = 0;
  let inputBytes = 0;
  async function* input() {
    for await (const chunk of writeTar([{ header, payload: payload() }])) {
      inputCrc = crc32(chunk, inputCrc);
      inputBytes += chunk.length;
      yield chunk;
    }
  }

  global.gc?.();
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  let outputCrc = 0;
  let outputBytes = 0;
  let chunks = 0;
  const reader = readTar(input());
  for await (const chunk of writeTar(reemitTar(reader))) {
    outputCrc = crc32(chunk, outputCrc);
    outputBytes += chunk.length;
    if (++chunks % 64 === 0) peak = Math.max(peak, process.memoryUsage.rss());
  }
  assert.equal(outputBytes, inputBytes);
  assert.equal(outputBytes, 512 + size + 24 + 1024);
  assert.equal(outputCrc, inputCrc);
  const growthMB = (peak - baseline) / 1024 / 1024;
  assert.ok(growthMB < 100, `RSS grew by ${growthMB.toFixed(0)} MB`);
});
