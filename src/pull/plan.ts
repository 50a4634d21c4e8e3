/**
 * The fetch plan of a partial pull, pure data → data: which files of a TOC the
 * store already has (reused), which contents must be fetched (each distinct digest
 * once), and the byte spans to request. Zero chunks are never fetched. Neighbouring
 * files share a span only when the gap between them (header frames of other
 * entries) costs at most `maxGapOverhead` of the data fetched with it, so merging
 * never inflates the bytes by more than that ratio.
 */
import type { FileRanges } from "../compress/toc.js";
import type { Digest } from "../oci/digest.js";

export interface FetchFile {
  file: FileRanges;
  digest: Digest;
  size: number;
  /** Blob extent of its non-zero frames; undefined when the file is all zero chunks. */
  extent?: { start: number; end: number };
  /** Compressed bytes of its non-zero frames. */
  compressedBytes: number;
}

export interface FetchSpan {
  start: number;
  end: number;
  files: FetchFile[];
}

export interface PullPlan {
  /** Regular files with content in the layer. */
  files: number;
  bytes: number;
  /** Files whose content the store already holds (or that repeat a fetched content). */
  reusedFiles: number;
  reusedBytes: number;
  /** Distinct contents to fetch and their uncompressed bytes. */
  needed: FetchFile[];
  neededBytes: number;
  /** Compressed bytes of the needed files' non-zero frames. */
  neededCompressedBytes: number;
  /** The spans to request (sorted, disjoint) and what they add up to. */
  spans: FetchSpan[];
  spanBytes: number;
}

export interface PlanOptions {
  /** A gap is merged only if the span's gaps stay within this share of its data. Default 0.03. */
  maxGapOverhead?: number;
  /** Never merge gaps larger than this. Default 64 KiB. */
  maxGap?: number;
  /** Spans stop growing at this size (a single larger file is its own span). Default 8 MiB. */
  maxSpan?: number;
}

/** Plans the fetch of every file whose digest `have` does not hold. */
export function planPull(files: FileRanges[], have: ReadonlySet<Digest>, opts: PlanOptions = {}): PullPlan {
  const maxGapOverhead = opts.maxGapOverhead ?? 0.03;
  const maxGap = opts.maxGap ?? 64 * 1024;
  const maxSpan = opts.maxSpan ?? 8 * 1024 * 1024;
  const plan: PullPlan = {
    files: 0,
    bytes: 0,
    reusedFiles: 0,
    reusedBytes: 0,
    needed: [],
    neededBytes: 0,
    neededCompressedBytes: 0,
    spans: [],
    spanBytes: 0,
  };
  const wanted = new Set<Digest>();
  for (const f of files) {
    const size = f.entry.size ?? 0;
    const digest = f.entry.digest as Digest;
    plan.files++;
    plan.bytes += size;
    if (have.has(digest) || wanted.has(digest)) {
      plan.reusedFiles++;
      plan.reusedBytes += size;
      continue;
    }
    wanted.add(digest);
    const fetch: FetchFile = { file: f, digest, size, compressedBytes: 0 };
    for (const r of f.ranges) {
      if (r.zeros) continue;
      fetch.compressedBytes += r.end - r.start;
      if (!fetch.extent) fetch.extent = { start: r.start, end: r.end };
      else {
        fetch.extent.start = Math.min(fetch.extent.start, r.start);
        fetch.extent.end = Math.max(fetch.extent.end, r.end);
      }
    }
    plan.needed.push(fetch);
    plan.neededBytes += size;
    plan.neededCompressedBytes += fetch.compressedBytes;
  }

  const fetched = plan.needed.filter((f) => f.extent).sort((a, b) => a.extent!.start - b.extent!.start);
  let span: (FetchSpan & { data: number; gaps: number }) | undefined;
  const close = () => {
    if (!span) return;
    plan.spans.push({ start: span.start, end: span.end, files: span.files });
    plan.spanBytes += span.end - span.start;
    span = undefined;
  };
  for (const f of fetched) {
    const { start, end } = f.extent!;
    const data = end - start;
    if (span) {
      const gap = Math.max(0, start - span.end);
      const fits =
        gap <= maxGap &&
        span.gaps + gap <= maxGapOverhead * (span.data + data) &&
        Math.max(span.end, end) - span.start <= maxSpan;
      if (fits) {
        span.end = Math.max(span.end, end);
        span.files.push(f);
        span.data += data;
        span.gaps += gap;
        continue;
      }
      close();
    }
    span = { start, end, files: [f], data, gaps: 0 };
  }
  close();
  return plan;
}
