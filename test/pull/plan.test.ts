/** planPull: reuse by digest, one fetch per distinct content, zero chunks never fetched, bounded gap merging. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { FileRanges, TocEntry } from "../../src/compress/toc.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { planPull } from "../../src/pull/plan.js";

function file(name: string, content: string, start: number, end: number, size = 1000): FileRanges {
  const entry: TocEntry = { type: "reg", name, size, digest: sha256(content), offset: start, endOffset: end };
  return { index: 0, entry, ranges: [{ start, end, size, fileOffset: 0, zeros: false }] };
}

describe("planPull", () => {
  it("reuses what the store has and fetches each distinct content once", () => {
    const files = [
      file("a", "A", 100, 200),
      file("b", "B", 300, 400),
      file("b2", "B", 500, 600),
      file("c", "C", 700, 800),
    ];
    const plan = planPull(files, new Set<Digest>([sha256("A")]));
    assert.equal(plan.reusedFiles, 2); // a (in the store), b2 (same content as b)
    assert.deepEqual(
      plan.needed.map((f) => f.file.entry.name),
      ["b", "c"],
    );
    assert.equal(plan.neededCompressedBytes, 200);
  });

  it("never fetches zero chunks; a file of zero chunks needs no span", () => {
    const z: FileRanges = {
      index: 0,
      entry: { type: "reg", name: "z", size: 4096, digest: sha256("z") },
      ranges: [
        { start: 100, end: 150, size: 1000, fileOffset: 0, zeros: false },
        { start: 150, end: 160, size: 2048, fileOffset: 1000, zeros: true },
        { start: 160, end: 210, size: 1048, fileOffset: 3048, zeros: false },
      ],
    };
    const allZero: FileRanges = {
      index: 1,
      entry: { type: "reg", name: "zz", size: 4096, digest: sha256("zz") },
      ranges: [{ start: 300, end: 310, size: 4096, fileOffset: 0, zeros: true }],
    };
    const plan = planPull([z, allZero], new Set());
    assert.equal(plan.neededCompressedBytes, 100);
    assert.equal(plan.spans.length, 1);
    assert.equal(plan.needed.find((f) => f.file.entry.name === "zz")?.extent, undefined);
  });

  it("merges a gap only while it costs at most maxGapOverhead of the data", () => {
    // 10 KB files 100 bytes apart: 1 % overhead, merged; 1 KB apart from the next: 10 %, not.
    const files = [file("a", "a", 0, 10_000), file("b", "b", 10_100, 20_100), file("c", "c", 21_100, 31_100)];
    const plan = planPull(files, new Set(), { maxGapOverhead: 0.03 });
    assert.deepEqual(
      plan.spans.map((s) => [s.start, s.end, s.files.length]),
      [
        [0, 20_100, 2],
        [21_100, 31_100, 1],
      ],
    );
    assert.ok(plan.spanBytes <= 1.03 * plan.neededCompressedBytes);
    // Spans stop at maxSpan.
    const small = planPull(files, new Set(), { maxGapOverhead: 1, maxSpan: 15_000 });
    assert.equal(small.spans.length, 3);
  });
});
