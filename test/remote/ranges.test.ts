import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import {
  contentRangeMatches,
  parseContentRange,
  planRangeRequests,
  rangeHeader,
  SpanCollector,
} from "../../src/remote/ranges.js";

describe("range planner", () => {
  it("merges ranges closer than the gap, keeps far ones apart, sorts", () => {
    const a = { offset: 1000, length: 100 };
    const b = { offset: 0, length: 10 };
    const c = { offset: 1150, length: 50 };
    const d = { offset: 5000, length: 1 };
    const plan = planRangeRequests([a, b, c, d], { mergeGap: 100 });
    assert.equal(plan.length, 1);
    assert.deepEqual(
      plan[0]!.spans.map((s) => [s.start, s.end]),
      [
        [0, 10],
        [1000, 1200],
        [5000, 5001],
      ],
    );
    // The caller's range objects are kept, by identity, in their span.
    assert.equal(plan[0]!.spans[1]!.ranges[0], a);
    assert.equal(plan[0]!.spans[1]!.ranges[1], c);
    assert.equal(rangeHeader(plan[0]!.spans), "bytes=0-9,1000-1199,5000-5000");
  });

  it("a gap of exactly mergeGap merges, one more byte does not", () => {
    const at = (gap: number) =>
      planRangeRequests(
        [
          { offset: 0, length: 10 },
          { offset: 10 + gap, length: 10 },
        ],
        { mergeGap: 5 },
      )[0]!.spans.length;
    assert.equal(at(5), 1);
    assert.equal(at(6), 2);
  });

  it("merges overlapping and nested ranges into one span", () => {
    const plan = planRangeRequests(
      [
        { offset: 0, length: 100 },
        { offset: 10, length: 5 },
        { offset: 50, length: 100 },
      ],
      { mergeGap: 0 },
    );
    assert.deepEqual(
      plan[0]!.spans.map((s) => [s.start, s.end, s.ranges.length]),
      [[0, 150, 3]],
    );
  });

  it("caps ranges per request, splitting into several requests", () => {
    const ranges = Array.from({ length: 10 }, (_, i) => ({ offset: i * 1000, length: 10 }));
    const plan = planRangeRequests(ranges, { mergeGap: 0, maxRangesPerRequest: 4 });
    assert.deepEqual(
      plan.map((r) => r.spans.length),
      [4, 4, 2],
    );
    assert.deepEqual(planRangeRequests([], {}), []);
  });

  it("rejects bad ranges naming the one that is wrong", () => {
    const bad = (ranges: { offset: number; length: number }[], blobSize?: number) =>
      assert.throws(
        () => planRangeRequests(ranges, { blobSize }),
        (err) => isRootstockError(err, "INVALID_ARGUMENT") && /ranges\[1\]/.test(err.message),
      );
    bad([
      { offset: 0, length: 1 },
      { offset: -1, length: 1 },
    ]);
    bad([
      { offset: 0, length: 1 },
      { offset: 0, length: 0 },
    ]);
    bad([
      { offset: 0, length: 1 },
      { offset: 0.5, length: 1 },
    ]);
    bad(
      [
        { offset: 0, length: 1 },
        { offset: 99, length: 2 },
      ],
      100,
    );
  });
});

describe("Content-Range", () => {
  it("parses and checks against a span, allowing an end clamped to the blob", () => {
    assert.deepEqual(parseContentRange("bytes 0-99/1000"), { start: 0, end: 100, total: 1000 });
    assert.deepEqual(parseContentRange("bytes 5-5/*"), { start: 5, end: 6, total: undefined });
    assert.equal(parseContentRange("bytes 10-5/100"), undefined);
    assert.equal(parseContentRange("bytes 0-100/100"), undefined);
    assert.equal(parseContentRange("items 0-1/2"), undefined);
    assert.equal(contentRangeMatches(parseContentRange("bytes 0-99/1000")!, { start: 0, end: 100 }), true);
    assert.equal(contentRangeMatches(parseContentRange("bytes 1-99/1000")!, { start: 0, end: 100 }), false);
    assert.equal(contentRangeMatches(parseContentRange("bytes 0-98/1000")!, { start: 0, end: 100 }), false);
    assert.equal(contentRangeMatches(parseContentRange("bytes 0-49/50")!, { start: 0, end: 100 }), true);
  });
});

describe("SpanCollector", () => {
  it("cuts overlapping ranges out of arbitrarily split bytes", () => {
    const blob = randomBytes(5000);
    const ranges = [
      { offset: 100, length: 1000 },
      { offset: 200, length: 10 },
      { offset: 1000, length: 2000 },
      { offset: 2999, length: 1 },
    ];
    const plan = planRangeRequests(ranges, { mergeGap: 0 });
    const span = plan[0]!.spans[0]!;
    assert.deepEqual([span.start, span.end], [100, 3000]);
    for (const step of [1, 7, 333, 5000]) {
      const collector = new SpanCollector(span);
      const done = new Map<object, Buffer>();
      for (let at = span.start; at < span.end; at += step) {
        for (const r of collector.write(blob.subarray(at, Math.min(at + step, span.end)))) {
          assert.ok(!done.has(r.range));
          done.set(r.range, Buffer.from(r.bytes));
        }
      }
      assert.ok(collector.done);
      assert.equal(done.size, 4);
      for (const r of ranges) assert.deepEqual(done.get(r), blob.subarray(r.offset, r.offset + r.length));
    }
  });
});
