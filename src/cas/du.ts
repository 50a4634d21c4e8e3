/** Disk usage of a store: counts, logical bytes and allocated bytes per area. */
import { lstat } from "node:fs/promises";
import type { ContentStore } from "./store.js";

export interface UsageCounts {
  count: number;
  /** Sum of file sizes. */
  bytes: number;
  /** Sum of allocated blocks (what the disc actually holds). */
  storedBytes: number;
}

export interface StoreUsage {
  blobs: UsageCounts;
  files: UsageCounts;
  refs: number;
  meta: UsageCounts;
  ingest: UsageCounts;
}

async function add(counts: UsageCounts, path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return;
  counts.count++;
  counts.bytes += info.size;
  counts.storedBytes += info.blocks * 512;
}

const zero = (): UsageCounts => ({ count: 0, bytes: 0, storedBytes: 0 });

export async function du(store: ContentStore): Promise<StoreUsage> {
  const usage: StoreUsage = { blobs: zero(), files: zero(), refs: 0, meta: zero(), ingest: zero() };
  for (const d of (await store.blobs.list()).digests) await add(usage.blobs, store.blobs.path(d));
  for (const d of (await store.files.list()).digests) await add(usage.files, store.files.path(d));
  for (const k of (await store.listMeta()).keys) await add(usage.meta, store.metaPath(k));
  for (const name of await store.listIngest()) await add(usage.ingest, `${store.ingestDir}/${name}`);
  usage.refs = (await store.listRefs()).length;
  return usage;
}
