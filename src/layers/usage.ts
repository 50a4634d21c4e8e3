/**
 * Dedup accounting for `store du`: what the recorded layers hold (logical: every
 * regular file of every layer, as if each layer kept its own copy) against what
 * the file objects take (stored: each distinct content once).
 */
import { lstat } from "node:fs/promises";
import type { ContentStore } from "../cas/store.js";
import type { Digest } from "../oci/digest.js";
import { readLayerRecord } from "./store.js";

export interface LayerUsage {
  layers: number;
  /** Regular files with content, over all recorded layers. */
  files: number;
  /** Sum of those files' sizes. */
  logicalBytes: number;
  /** Distinct contents they name, and the bytes of those file objects. */
  uniqueFiles: number;
  uniqueBytes: number;
  /** Blocks the file objects occupy on disk. */
  storedBytes: number;
  /** logicalBytes / uniqueBytes (1 when nothing is shared). */
  dedupRatio: number;
}

export async function layerUsage(store: ContentStore): Promise<LayerUsage> {
  const usage: LayerUsage = {
    layers: 0,
    files: 0,
    logicalBytes: 0,
    uniqueFiles: 0,
    uniqueBytes: 0,
    storedBytes: 0,
    dedupRatio: 1,
  };
  const unique = new Map<Digest, number>();
  for (const key of (await store.listMeta()).keys) {
    const record = await readLayerRecord(store, key).catch(() => undefined);
    if (!record) continue;
    usage.layers++;
    for (const e of record.entries) {
      if (e.type !== "reg" || !e.size || !e.digest) continue;
      usage.files++;
      usage.logicalBytes += e.size;
      unique.set(e.digest, e.size);
    }
  }
  for (const [digest, size] of unique) {
    usage.uniqueFiles++;
    usage.uniqueBytes += size;
    const info = await lstat(store.filePath(digest)).catch(() => undefined);
    if (info) usage.storedBytes += info.blocks * 512;
  }
  usage.dedupRatio = usage.uniqueBytes > 0 ? usage.logicalBytes / usage.uniqueBytes : 1;
  return usage;
}
