/**
 * File hashing on worker threads: Node hashes on the thread that calls update(),
 * so "two objects in parallel" only means two cores with workers. The worker is
 * inline CommonJS (no file to resolve, works from src under tsx and from dist).
 */
import { Worker } from "node:worker_threads";
import type { Digest } from "../oci/digest.js";

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { openSync, readSync, closeSync } = require("node:fs");
const buf = Buffer.allocUnsafe(1 << 20);
parentPort.on("message", ({ id, path }) => {
  let fd;
  try {
    fd = openSync(path, "r");
    const hash = createHash("sha256");
    let size = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      size += n;
    }
    parentPort.postMessage({ id, digest: "sha256:" + hash.digest("hex"), size });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
});
`;

interface Reply {
  id: number;
  digest?: Digest;
  size?: number;
  error?: string;
}

export class HashPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: Array<() => void> = [];
  private readonly pending = new Map<
    number,
    { resolve: (r: { digest: Digest; size: number }) => void; reject: (e: Error) => void }
  >();
  private nextId = 0;

  constructor(size: number) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.on("message", (reply: Reply) => {
        const p = this.pending.get(reply.id);
        this.pending.delete(reply.id);
        this.release(worker);
        if (!p) return;
        if (reply.error !== undefined) p.reject(new Error(reply.error));
        else p.resolve({ digest: reply.digest!, size: reply.size! });
      });
      worker.on("error", (err) => {
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      });
      // Idle workers must not keep the process alive; busy ones must (see hash()).
      worker.unref();
      this.workers.push(worker);
      this.idle.push(worker);
    }
  }

  private release(worker: Worker): void {
    worker.unref();
    this.idle.push(worker);
    this.waiting.shift()?.();
  }

  /** sha256 and size of the file at `path`, computed on a worker thread. */
  async hash(path: string): Promise<{ digest: Digest; size: number }> {
    while (this.idle.length === 0) await new Promise<void>((r) => this.waiting.push(r));
    const worker = this.idle.pop()!;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, path });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

let shared: HashPool | undefined;

/** The process-wide pool (two workers: the machine's budget), created on first use. */
export function sharedHashPool(): HashPool {
  shared ??= new HashPool(2);
  return shared;
}
