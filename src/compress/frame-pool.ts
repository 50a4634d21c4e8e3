/**
 * A small pool of worker threads that compress independent zstd frames in parallel
 * (zstd-napi is synchronous per call). Jobs are batched per message to amortise
 * postMessage, input and output ArrayBuffers are transferred, results come back as
 * promises the caller awaits in output order. All parts of one file go to the same
 * worker, which keeps that file's chunker and hashes.
 */
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import { siblingModule, spawnWorker } from "../workers.js";

export type FrameJob =
  | { kind: "raw"; data: Uint8Array }
  | {
      kind: "file";
      fileId: number;
      data: Uint8Array;
      first: boolean;
      final: boolean;
      /** Content-defined chunks (§5) or one chunk per file. */
      chunking: boolean;
    };

export interface FrameInfo {
  compressedSize: number;
  /** Uncompressed bytes in this frame. */
  size: number;
  /** The frame starts / ends a chunk. */
  first: boolean;
  last: boolean;
  zeros: boolean;
  /** On the last frame of a content-defined chunk. */
  chunkDigest?: Digest;
}

export interface FrameJobResult {
  frames: FrameInfo[];
  /** On a file's final part. */
  fileDigest?: Digest;
  crc?: Uint8Array;
}

export interface FrameJobOutput extends FrameJobResult {
  /** The compressed frames of this job, concatenated. */
  bytes: Uint8Array;
  /**
   * Optional: says `bytes` is no longer referenced. Once every job of a batch has
   * said so, the batch's output buffer goes back to its worker for a later batch
   * (fresh pages are costly to fault in); never called, it is simply collected.
   */
  release: () => void;
}

export interface WorkerRequest {
  batchId: number;
  level: number;
  windowLog: number;
  jobs: FrameJob[];
  /** A released output buffer of an earlier batch, for this batch's frames. */
  output?: ArrayBuffer;
}

export interface WorkerReply {
  batchId: number;
  results: FrameJobResult[];
  frames: Uint8Array;
  /** The request's input buffer, handed back for reuse when nothing in the worker refers to it. */
  recycled?: ArrayBuffer;
}

interface PendingJob {
  job: FrameJob;
  resolve: (out: FrameJobOutput) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  /** Bytes submitted to this worker and not yet returned. */
  load: number;
  batch: PendingJob[];
  batchBytes: number;
  /** The batch's inputs, copied in at submit: the caller may reuse its buffers right after. */
  batchBuffer: Uint8Array | undefined;
  inflight: Map<number, PendingJob[]>;
  /** Released output buffers of this worker's batches. */
  freeOutputs: ArrayBuffer[];
}

const BATCH_BYTES = 512 * 1024;
const BATCH_JOBS = 256;
/** A batch's buffer: a part that does not fit sends the batch first (larger parts get one of their own). */
const INPUT_BUFFER_SIZE = 1024 * 1024;
/** More than every batch in flight (the writer keeps ≤ 8 MiB of input in flight): freed input pages would be faulted in again. */
const MAX_FREE_BUFFERS = 48;
const MAX_FREE_OUTPUTS = 16;

function newWorker(): Worker {
  // A small young generation: the workers allocate mostly short-lived buffers.
  return spawnWorker(siblingModule(import.meta.url, "frame-worker"), {
    resourceLimits: { maxYoungGenerationSizeMb: 8 },
  });
}

export interface FramePoolOptions {
  level: number;
  /** log2 of the zstd window (≤ 23: an 8 MiB window, §A.10). */
  windowLog?: number;
  threads?: number;
}

export class FramePool {
  private readonly slots: Slot[];
  private nextBatch = 0;
  private nextFile = 0;
  private readonly fileSlot = new Map<number, Slot>();
  private flushScheduled = false;
  private failed: unknown;
  private readonly level: number;
  private readonly windowLog: number;
  /** Input batch buffers handed back by workers (avoids multi-MiB allocation churn). */
  private readonly freeBuffers: ArrayBuffer[] = [];

  constructor(opts: FramePoolOptions) {
    this.level = opts.level;
    this.windowLog = Math.min(opts.windowLog ?? 23, 23);
    const n = Math.max(1, opts.threads ?? Math.min(availableParallelism(), 4));
    this.slots = [];
    for (let i = 0; i < n; i++) {
      const worker = newWorker();
      const slot: Slot = {
        worker,
        load: 0,
        batch: [],
        batchBytes: 0,
        batchBuffer: undefined,
        inflight: new Map(),
        freeOutputs: [],
      };
      worker.on("message", (reply: WorkerReply) => this.onReply(slot, reply));
      worker.on("error", (err) => this.fail(err));
      this.slots.push(slot);
    }
  }

  newFileId(): number {
    return this.nextFile++;
  }

  /**
   * Queues a job; the promise resolves with its frames. `job.data` is copied before
   * this returns (into the buffer the batch is transferred in), so the caller may
   * overwrite it at once.
   */
  submit(job: FrameJob): Promise<FrameJobOutput> {
    if (this.failed) return Promise.reject(this.failed);
    let slot: Slot;
    if (job.kind === "file") {
      const sticky = this.fileSlot.get(job.fileId);
      slot = sticky ?? this.leastLoaded();
      if (job.final) this.fileSlot.delete(job.fileId);
      else if (!sticky) this.fileSlot.set(job.fileId, slot);
    } else slot = this.leastLoaded();
    const size = job.data.length;
    if (slot.batchBuffer && slot.batchBytes + size > slot.batchBuffer.length) this.flushSlot(slot);
    if (!slot.batchBuffer) slot.batchBuffer = this.inputBuffer(size);
    slot.batchBuffer.set(job.data, slot.batchBytes);
    const copied = { ...job, data: slot.batchBuffer.subarray(slot.batchBytes, slot.batchBytes + size) };
    return new Promise<FrameJobOutput>((resolve, reject) => {
      slot.batch.push({ job: copied, resolve, reject });
      slot.batchBytes += size;
      slot.load += job.data.length;
      if (slot.batchBytes >= BATCH_BYTES || slot.batch.length >= BATCH_JOBS) this.flushSlot(slot);
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Sends every partial batch now. */
  flush(): void {
    this.flushScheduled = false;
    for (const slot of this.slots) this.flushSlot(slot);
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private leastLoaded(): Slot {
    let best = this.slots[0] as Slot;
    for (const s of this.slots) if (s.load < best.load) best = s;
    return best;
  }

  private inputBuffer(minSize: number): Uint8Array {
    const reuse = this.freeBuffers.findIndex((b) => b.byteLength >= minSize);
    if (reuse >= 0) return new Uint8Array(this.freeBuffers.splice(reuse, 1)[0] as ArrayBuffer);
    // Not zero-filled: every byte sent is written first.
    const fresh = Buffer.allocUnsafeSlow(Math.max(minSize, INPUT_BUFFER_SIZE));
    return new Uint8Array(fresh.buffer, fresh.byteOffset, fresh.length);
  }

  private flushSlot(slot: Slot): void {
    if (slot.batch.length === 0) return;
    const pending = slot.batch;
    const buffer = slot.batchBuffer as Uint8Array;
    slot.batch = [];
    slot.batchBytes = 0;
    slot.batchBuffer = undefined;
    const batchId = this.nextBatch++;
    slot.inflight.set(batchId, pending);
    const req: WorkerRequest = {
      batchId,
      level: this.level,
      windowLog: this.windowLog,
      jobs: pending.map((p) => p.job),
    };
    const transfer = [buffer.buffer as ArrayBuffer];
    const output = slot.freeOutputs.pop();
    if (output) {
      req.output = output;
      transfer.push(output);
    }
    slot.worker.postMessage(req, transfer);
  }

  private onReply(slot: Slot, reply: WorkerReply): void {
    const pending = slot.inflight.get(reply.batchId);
    if (!pending) return;
    slot.inflight.delete(reply.batchId);
    if (reply.recycled && this.freeBuffers.length < MAX_FREE_BUFFERS) this.freeBuffers.push(reply.recycled);
    let unreleased = reply.results.length;
    const output = reply.frames.buffer as ArrayBuffer;
    const release = () => {
      unreleased--;
      if (unreleased === 0 && slot.freeOutputs.length < MAX_FREE_OUTPUTS) slot.freeOutputs.push(output);
    };
    let pos = 0;
    reply.results.forEach((result, i) => {
      const p = pending[i] as PendingJob;
      slot.load -= p.job.data.length;
      let len = 0;
      for (const f of result.frames) len += f.compressedSize;
      let released = false;
      const once = () => {
        if (!released) {
          released = true;
          release();
        }
      };
      p.resolve({ ...result, bytes: reply.frames.subarray(pos, pos + len), release: once });
      pos += len;
    });
  }

  private fail(err: unknown): void {
    this.failed = new RootstockError("COMPRESSION", `compression worker failed: ${String(err)}`, {
      cause: err,
    });
    for (const slot of this.slots) {
      for (const pending of slot.inflight.values()) for (const p of pending) p.reject(this.failed);
      for (const p of slot.batch) p.reject(this.failed);
      slot.inflight.clear();
      slot.batch = [];
    }
  }
}
