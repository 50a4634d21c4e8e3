/**
 * Garbage collection from refs, under the exclusive lock: everything not reachable
 * (reach.ts) is deleted — blobs, file objects, metadata documents — and so is every
 * ingest file (no writer can be active while the exclusive lock is held, so any
 * ingest file is a leftover of a dead process).
 */
import { lstat, rm } from "node:fs/promises";
import { join } from "node:path";
import { type ProgressSink, silentProgress } from "../progress.js";
import { assertWalkable, computeReachability } from "./reach.js";
import type { ContentStore } from "./store.js";

export interface GcOptions {
  /** Report what would be deleted without deleting. */
  dryRun?: boolean;
  progress?: ProgressSink;
}

export interface GcCounts {
  count: number;
  bytes: number;
}

export interface GcReport {
  dryRun: boolean;
  blobs: GcCounts;
  files: GcCounts;
  meta: GcCounts;
  ingest: GcCounts;
  /** Blobs and file objects kept. */
  kept: { blobs: number; files: number };
  bytesFreed: number;
}

async function sizeOf(path: string): Promise<number> {
  return (await lstat(path).catch(() => undefined))?.size ?? 0;
}

export async function gc(store: ContentStore, opts: GcOptions = {}): Promise<GcReport> {
  const progress = opts.progress ?? silentProgress;
  const dryRun = opts.dryRun ?? false;
  return store.withExclusive(async () => {
    progress({ type: "start", id: "gc", label: dryRun ? "gc (dry run)" : "gc", unit: "items" });
    const reach = await computeReachability(store);
    assertWalkable(reach);
    const report: GcReport = {
      dryRun,
      blobs: { count: 0, bytes: 0 },
      files: { count: 0, bytes: 0 },
      meta: { count: 0, bytes: 0 },
      ingest: { count: 0, bytes: 0 },
      kept: { blobs: 0, files: 0 },
      bytesFreed: 0,
    };
    let done = 0;
    const sweep = async (path: string, counts: GcCounts, remove: () => Promise<unknown>) => {
      counts.count++;
      counts.bytes += await sizeOf(path);
      if (!dryRun) await remove();
      progress({ type: "advance", id: "gc", current: ++done });
    };

    const blobs = await store.blobs.list();
    for (const digest of blobs.digests) {
      if (reach.blobs.has(digest)) report.kept.blobs++;
      else await sweep(store.blobs.path(digest), report.blobs, () => store.blobs.remove(digest));
    }
    const files = await store.files.list();
    for (const digest of files.digests) {
      // A file object hardlinked out (nlink > 1) still frees nothing, but is unreferenced all the same.
      if (reach.files.has(digest)) report.kept.files++;
      else await sweep(store.files.path(digest), report.files, () => store.files.remove(digest));
    }
    const meta = await store.listMeta();
    for (const key of meta.keys) {
      if (!reach.meta.has(key)) {
        const path = store.metaPath(key);
        await sweep(path, report.meta, () => rm(path, { force: true }));
      }
    }
    for (const name of await store.listIngest()) {
      const path = join(store.ingestDir, name);
      await sweep(path, report.ingest, () => rm(path, { force: true, recursive: true }));
    }
    report.bytesFreed = report.blobs.bytes + report.files.bytes + report.meta.bytes + report.ingest.bytes;
    progress({
      type: "done",
      id: "gc",
      summary: `${dryRun ? "would free" : "freed"} ${report.bytesFreed} bytes`,
    });
    return report;
  });
}
