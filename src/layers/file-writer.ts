/**
 * File objects written on a worker thread. Exploding a layer is one pass over the
 * tar; on the thread that parses it, hashing every payload twice (sha256 for the
 * object, CRC-64 for tar-split) and thousands of file creations cost more than the
 * parse itself. Here the parser only copies payload bytes into batches (transferred,
 * then recycled); the worker hashes and writes them (file-writer-worker.ts) and
 * answers with each file's digest, CRC-64 and whether the store had it already.
 *
 * Order is kept: results resolve in submission order per file. Memory is bounded:
 * `room()` waits while more than `maxInflightBytes` are with the worker.
 */
import type { Worker } from "node:worker_threads";
import type { ContentStore } from "../cas/store.js";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import { siblingModule, spawnWorker } from "../workers.js";

export interface WriterResult {
  fileId: number;
  digest: Digest;
  size: number;
  existed: boolean;
  crc: Uint8Array;
}

interface WriterJob {
  fileId: number;
  offset: number;
  length: number;
  first: boolean;
  final: boolean;
}

export interface WriterRequest {
  batchId: number;
  /** Sent with the first batch. */
  config?: { filesRoot: string; ingestDir: string; durable: boolean };
  buffer: ArrayBuffer;
  length: number;
  jobs: WriterJob[];
}

export interface WriterReply {
  batchId: number;
  results: WriterResult[];
  /** The request's buffer, handed back for reuse. */
  buffer: ArrayBuffer;
  error?: { message: string; code?: string };
}

const BATCH_BYTES = 1024 * 1024;
const BATCH_JOBS = 512;

export class FileObjectWriter {
  private readonly worker: Worker;
  private readonly pending = new Map<
    number,
    { resolve: (r: WriterResult) => void; reject: (e: unknown) => void }
  >();
  private readonly inflight = new Map<number, number>();
  private readonly free: ArrayBuffer[] = [];
  /**
   * Returned batch buffers kept for reuse: as many as the in-flight window holds, so
   * a burst of replies is not dropped and allocated again (a fresh page costs a
   * fault here). With 8, a full pull allocated 38–72 of its ~460 batches fresh;
   * with the window's worth, 26–30 (the window's first fill), and took 0.4–1.2 s
   * less in three alternating pairs.
   */
  private readonly maxFree: number;
  private buffer: Uint8Array;
  private length = 0;
  private jobs: WriterJob[] = [];
  private nextFile = 0;
  private nextBatch = 0;
  private inflightBytes = 0;
  private configSent = false;
  private failure: unknown;
  private waiters: Array<() => void> = [];
  private flushScheduled = false;

  constructor(
    private readonly store: ContentStore,
    private readonly maxInflightBytes = 16 * 1024 * 1024,
  ) {
    this.worker = spawnWorker(siblingModule(import.meta.url, "file-writer-worker"), {
      resourceLimits: { maxYoungGenerationSizeMb: 8 },
    });
    this.worker.on("message", (reply: WriterReply) => this.onReply(reply));
    this.worker.on("error", (err) => this.fail(err));
    this.worker.on("exit", (code) => {
      if (this.pending.size > 0) this.fail(new Error(`file writer exited with code ${code}`));
    });
    this.buffer = new Uint8Array(BATCH_BYTES);
    this.maxFree = Math.ceil(maxInflightBytes / BATCH_BYTES) + 8;
  }

  /** A new file; give its content to `write` in order, the last part with `final`. */
  newFile(): number {
    return this.nextFile++;
  }

  /**
   * Queues a part of a file (copied: `data` may be reused after the call). The
   * final part's promise resolves with the stored object; `first` marks the first.
   */
  write(fileId: number, data: Uint8Array, first: boolean, final: boolean): Promise<WriterResult> | undefined {
    if (this.failure) throw this.failure;
    let at = 0;
    let isFirst = first;
    // A part larger than the room left in the batch is split across batches.
    while (data.length - at > BATCH_BYTES - this.length) {
      const take = BATCH_BYTES - this.length;
      if (take > 0) {
        this.buffer.set(data.subarray(at, at + take), this.length);
        this.jobs.push({ fileId, offset: this.length, length: take, first: isFirst, final: false });
        this.length += take;
        at += take;
        isFirst = false;
      }
      this.flush();
    }
    const rest = data.length - at;
    this.buffer.set(data.subarray(at), this.length);
    this.jobs.push({ fileId, offset: this.length, length: rest, first: isFirst, final });
    this.length += rest;
    const result = final
      ? new Promise<WriterResult>((resolve, reject) => this.pending.set(fileId, { resolve, reject }))
      : undefined;
    if (this.length >= BATCH_BYTES || this.jobs.length >= BATCH_JOBS) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    return result;
  }

  /** Resolves when the worker holds at most `maxInflightBytes` (backpressure). */
  async room(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.inflightBytes + this.length <= this.maxInflightBytes) return;
    this.flush();
    while (this.inflightBytes > this.maxInflightBytes && !this.failure) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /** Sends the current batch now. */
  flush(): void {
    if (this.jobs.length === 0 || this.failure) return;
    const batchId = this.nextBatch++;
    const req: WriterRequest = {
      batchId,
      buffer: this.buffer.buffer as ArrayBuffer,
      length: this.length,
      jobs: this.jobs,
    };
    if (!this.configSent) {
      req.config = {
        filesRoot: this.store.files.root,
        ingestDir: this.store.files.ingestDir,
        durable: this.store.files.durable,
      };
      this.configSent = true;
    }
    this.inflight.set(batchId, this.length);
    this.inflightBytes += this.length;
    this.worker.postMessage(req, [req.buffer]);
    const reuse = this.free.pop();
    this.buffer = reuse ? new Uint8Array(reuse) : new Uint8Array(BATCH_BYTES);
    this.length = 0;
    this.jobs = [];
  }

  async close(): Promise<void> {
    await this.worker.terminate();
    // Anything still waiting will never be answered.
    if (this.pending.size > 0) this.fail(new Error("file writer closed"));
  }

  private onReply(reply: WriterReply): void {
    this.inflightBytes -= this.inflight.get(reply.batchId) ?? 0;
    this.inflight.delete(reply.batchId);
    if (this.free.length < this.maxFree) this.free.push(reply.buffer);
    this.store.noteCommitted(reply.results.filter((r) => !r.existed).map((r) => r.digest));
    for (const r of reply.results) {
      const p = this.pending.get(r.fileId);
      this.pending.delete(r.fileId);
      p?.resolve(r);
    }
    if (reply.error) {
      // As the fs call's own error would be on this thread (ENOSPC, EACCES, …).
      const { message, code } = reply.error;
      this.fail(Object.assign(new Error(`writing file objects: ${message}`), code ? { code } : {}));
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private fail(err: unknown): void {
    this.failure ??=
      err instanceof Error && "code" in err
        ? err
        : new RootstockError("INTERNAL", `file writer failed: ${String(err)}`, { cause: err });
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
