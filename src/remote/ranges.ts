/**
 * Ranged reads, planned without I/O: the caller asks for byte ranges of a blob (the
 * compressed frames of the files it lacks); the planner sorts them, merges those
 * closer than `mergeGap` bytes into spans (fewer, larger requests beat many tiny
 * ones), and splits the spans into HTTP requests of at most `maxRangesPerRequest`
 * ranges each (servers cap the Range header; some refuse many ranges). The
 * collector then cuts the caller's ranges back out of whatever bytes arrive.
 */
import { RootstockError } from "../errors.js";

/** Bytes [offset, offset + length) of a blob. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** A contiguous run of bytes fetched as one range: [start, end), covering `ranges`. */
export interface Span {
  start: number;
  end: number;
  /** The caller's ranges inside this span, by identity, sorted by offset. */
  ranges: ByteRange[];
}

/** One HTTP request: its spans, sorted and disjoint. */
export interface RangeRequest {
  spans: Span[];
}

export interface RangePlanOptions {
  /** Ranges separated by at most this many bytes are fetched as one span. Default 16 KiB. */
  mergeGap?: number;
  /** At most this many spans in one request's Range header. Default 32. */
  maxRangesPerRequest?: number;
  /** Blob size, when known: ranges past it are rejected up front. */
  blobSize?: number;
}

export const DEFAULT_MERGE_GAP = 16 * 1024;
export const DEFAULT_MAX_RANGES_PER_REQUEST = 32;

/** Validates ranges and plans the requests that fetch them. Empty input plans nothing. */
export function planRangeRequests(ranges: readonly ByteRange[], opts: RangePlanOptions = {}): RangeRequest[] {
  const mergeGap = opts.mergeGap ?? DEFAULT_MERGE_GAP;
  const maxPerRequest = opts.maxRangesPerRequest ?? DEFAULT_MAX_RANGES_PER_REQUEST;
  if (!Number.isInteger(mergeGap) || mergeGap < 0) {
    throw new RootstockError("INVALID_ARGUMENT", `mergeGap: not a non-negative integer: ${mergeGap}`);
  }
  if (!Number.isInteger(maxPerRequest) || maxPerRequest < 1) {
    throw new RootstockError("INVALID_ARGUMENT", `maxRangesPerRequest: must be at least 1: ${maxPerRequest}`);
  }
  ranges.forEach((range, i) => {
    checkRange(range, i, opts.blobSize);
  });

  const sorted = [...ranges].sort((a, b) => a.offset - b.offset || a.length - b.length);
  const spans: Span[] = [];
  for (const range of sorted) {
    const last = spans[spans.length - 1];
    const end = range.offset + range.length;
    if (last && range.offset <= last.end + mergeGap) {
      last.end = Math.max(last.end, end);
      last.ranges.push(range);
    } else {
      spans.push({ start: range.offset, end, ranges: [range] });
    }
  }
  const requests: RangeRequest[] = [];
  for (let i = 0; i < spans.length; i += maxPerRequest) {
    requests.push({ spans: spans.slice(i, i + maxPerRequest) });
  }
  return requests;
}

function checkRange(range: ByteRange, index: number, blobSize: number | undefined): void {
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `ranges[${index}].offset: not a non-negative integer: ${offset}`,
    );
  }
  if (!Number.isSafeInteger(length) || length < 1) {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `ranges[${index}].length: not a positive integer: ${length}`,
    );
  }
  if (blobSize !== undefined && offset + length > blobSize) {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `ranges[${index}]: bytes ${offset}-${offset + length - 1} lie past the blob's end (${blobSize} bytes)`,
    );
  }
}

/** The Range header for spans: `bytes=0-99,200-299` (inclusive ends, as HTTP has it). */
export function rangeHeader(spans: readonly Pick<Span, "start" | "end">[]): string {
  return `bytes=${spans.map((s) => `${s.start}-${s.end - 1}`).join(",")}`;
}

/** A parsed `Content-Range: bytes a-b/total`: [start, end) and the total when given. */
export interface ContentRange {
  start: number;
  end: number;
  total: number | undefined;
}

/** Parses a Content-Range header value; undefined when malformed. */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  if (!value) return undefined;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value);
  if (!m) return undefined;
  const start = Number(m[1]);
  const last = Number(m[2]);
  const total = m[3] === "*" ? undefined : Number(m[3]);
  if (last < start || (total !== undefined && last >= total)) return undefined;
  return { start, end: last + 1, total };
}

/** What an answered span must look like: the server may clamp the end to the blob's size. */
export function contentRangeMatches(got: ContentRange, span: Pick<Span, "start" | "end">): boolean {
  if (got.start !== span.start) return false;
  if (got.end === span.end) return true;
  return got.total !== undefined && got.end === got.total && span.end > got.total;
}

/** A requested range with its bytes, once every byte of it has arrived. */
export interface RangeBytes {
  range: ByteRange;
  bytes: Uint8Array;
}

/**
 * Cuts a span's ranges out of the bytes that arrive for it, in order. Memory is the
 * ranges in flight, never the whole span: a range's buffer exists from its first
 * byte to its last.
 */
export class SpanCollector {
  private readonly buffers = new Map<ByteRange, Uint8Array>();
  private next = 0; // first range not yet complete in `span.ranges` order is found from here
  private position: number;

  constructor(readonly span: Span) {
    this.position = span.start;
  }

  /** Absolute blob offset of the next byte this span expects. */
  get expected(): number {
    return this.position;
  }

  get done(): boolean {
    return this.next >= this.span.ranges.length;
  }

  /** Feeds the next bytes of the span (they start at `expected`); returns ranges completed by them. */
  write(chunk: Uint8Array): RangeBytes[] {
    const chunkStart = this.position;
    const chunkEnd = chunkStart + chunk.length;
    this.position = chunkEnd;
    const completed: RangeBytes[] = [];
    const ranges = this.span.ranges;
    for (let i = this.next; i < ranges.length; i++) {
      const range = ranges[i]!;
      if (range.offset >= chunkEnd) break; // sorted by offset: none later can start in this chunk
      const rangeEnd = range.offset + range.length;
      if (rangeEnd <= chunkStart) continue; // already complete
      let buf = this.buffers.get(range);
      if (!buf) {
        buf = new Uint8Array(range.length);
        this.buffers.set(range, buf);
      }
      const from = Math.max(range.offset, chunkStart);
      const to = Math.min(rangeEnd, chunkEnd);
      buf.set(chunk.subarray(from - chunkStart, to - chunkStart), from - range.offset);
      if (to === rangeEnd) {
        this.buffers.delete(range);
        completed.push({ range, bytes: buf });
      }
    }
    // Advance past ranges that are now complete (ranges overlap, so test each from the front).
    while (this.next < ranges.length) {
      const r = ranges[this.next]!;
      if (r.offset + r.length <= this.position) this.next++;
      else break;
    }
    return completed;
  }
}
