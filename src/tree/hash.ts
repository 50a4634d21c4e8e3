/**
 * Content digests of many files, fast. Measured on the essential rootfs (5k files,
 * 135 MB, warm cache): promise-based reads cost four thread-pool round trips per
 * file and took 570-860 ms; plain synchronous read + sha256 took 340 ms. So files are
 * hashed synchronously inside worker threads (one per core, bounded by
 * `concurrency`), fed batches by the main thread, which stays free for progress.
 * Small jobs run inline: starting a worker costs more than they do.
 */
import { createHash } from "node:crypto";
import { closeSync, constants, openSync, readSync } from "node:fs";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import type { ProgressSink } from "../progress.js";
import type { TreeNode } from "./tree.js";

export interface HashJob {
  abs: string;
  node: TreeNode;
}

type Result = { digest: string; size: number } | { error: string };

const CHUNK = 1 << 20;

/** Reads and hashes each path; errors are returned, not thrown, so a batch always answers. */
function hashPaths(paths: string[], buffer: Buffer): Result[] {
  const out: Result[] = [];
  for (const path of paths) {
    try {
      // O_NOFOLLOW: a file swapped for a symlink since lstat is refused, not followed.
      const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      const hash = createHash("sha256");
      let size = 0;
      try {
        for (;;) {
          const n = readSync(fd, buffer, 0, buffer.length, null);
          if (n === 0) break;
          hash.update(buffer.subarray(0, n));
          size += n;
        }
      } finally {
        closeSync(fd);
      }
      out.push({ digest: hash.digest("hex"), size });
    } catch (err) {
      out.push({ error: (err as Error).message });
    }
  }
  return out;
}

/**
 * The same routine for workers, as plain JavaScript: a worker started from source
 * runs the same way from tsx and from the compiled dist (no loader involved).
 */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { closeSync, constants, openSync, readSync } = require("node:fs");
const { createHash } = require("node:crypto");
const buffer = Buffer.allocUnsafe(${CHUNK});
parentPort.on("message", (paths) => {
  const out = [];
  for (const path of paths) {
    try {
      const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      const hash = createHash("sha256");
      let size = 0;
      try {
        for (;;) {
          const n = readSync(fd, buffer, 0, buffer.length, null);
          if (n === 0) break;
          hash.update(buffer.subarray(0, n));
          size += n;
        }
      } finally {
        closeSync(fd);
      }
      out.push({ digest: hash.digest("hex"), size });
    } catch (err) {
      out.push({ error: err.message });
    }
  }
  parentPort.postMessage(out);
});
`;

const INLINE_BYTES = 8 * CHUNK;
const BATCH_BYTES = 4 * CHUNK;
const BATCH_FILES = 64;

export async function hashFiles(
  jobs: readonly HashJob[],
  options: { concurrency?: number; progress: ProgressSink },
): Promise<void> {
  const { progress } = options;
  const total = jobs.reduce((n, j) => n + j.node.size, 0);
  progress({ type: "start", id: "tree-hash", label: "hash files", total, unit: "bytes" });
  let hashed = 0;
  const settle = (job: HashJob, result: Result) => {
    if ("error" in result) {
      throw new RootstockError("NOT_FOUND", `${job.abs}: cannot read: ${result.error}`);
    }
    if (result.size !== job.node.size) {
      throw new RootstockError(
        "SIZE_MISMATCH",
        `${job.abs}: file changed while scanning (${job.node.size} bytes at lstat, ${result.size} read)`,
      );
    }
    job.node.digest = `sha256:${result.digest}` as Digest;
    hashed += result.size;
  };

  const workers = Math.min(options.concurrency ?? availableParallelism(), availableParallelism(), 8);
  if (total <= INLINE_BYTES || workers <= 1 || jobs.length < 2) {
    const buffer = Buffer.allocUnsafe(CHUNK);
    for (let i = 0; i < jobs.length; i += BATCH_FILES) {
      const batch = jobs.slice(i, i + BATCH_FILES);
      const results = hashPaths(
        batch.map((j) => j.abs),
        buffer,
      );
      for (const [k, r] of results.entries()) settle(batch[k]!, r);
      progress({ type: "advance", id: "tree-hash", current: hashed, total });
      // Let timers and I/O run between batches.
      await new Promise((resolve) => setImmediate(resolve));
    }
  } else {
    await hashInWorkers(jobs, workers, settle, () =>
      progress({ type: "advance", id: "tree-hash", current: hashed, total }),
    );
  }
  progress({ type: "done", id: "tree-hash", summary: `${jobs.length} files, ${hashed} bytes` });
}

async function hashInWorkers(
  jobs: readonly HashJob[],
  count: number,
  settle: (job: HashJob, result: Result) => void,
  advanced: () => void,
): Promise<void> {
  let next = 0;
  const takeBatch = (): HashJob[] => {
    const batch: HashJob[] = [];
    let bytes = 0;
    while (next < jobs.length && batch.length < BATCH_FILES && bytes < BATCH_BYTES) {
      const job = jobs[next++]!;
      batch.push(job);
      bytes += job.node.size;
    }
    return batch;
  };
  // execArgv []: the source is plain JavaScript, so workers skip loaders (tsx) the process runs under.
  const pool = Array.from({ length: count }, () => new Worker(WORKER_SOURCE, { eval: true, execArgv: [] }));
  try {
    await Promise.all(
      pool.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            let batch = takeBatch();
            if (batch.length === 0) return resolve();
            worker.on("error", reject);
            worker.on("message", (results: Result[]) => {
              try {
                for (const [k, r] of results.entries()) settle(batch[k]!, r);
              } catch (err) {
                reject(err);
                return;
              }
              advanced();
              batch = takeBatch();
              if (batch.length === 0) resolve();
              else worker.postMessage(batch.map((j) => j.abs));
            });
            worker.postMessage(batch.map((j) => j.abs));
          }),
      ),
    );
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
  }
}
