/**
 * Worker thread body of the frame pool: compresses independent zstd frames and, for
 * file payloads, also chunks them (rollsum), hashes them (file sha256, chunk sha256)
 * and computes their CRC-64, so the main thread only parses, orders and writes.
 * Protocol: see frame-pool.ts.
 */
import { createHash, type Hash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { type ChunkPiece, RollsumChunker } from "./chunker.js";
import { Crc64 } from "./crc64.js";
import type { FrameJob, FrameJobResult, WorkerReply, WorkerRequest } from "./frame-pool.js";
import { zstdBinding } from "./zstd.js";

const binding = zstdBinding;

const MAX_PIECE = 8 * 1024 * 1024;
const cctx = new binding.CCtx();
let currentLevel = Number.NaN;
/** Frames of the batch in progress (grows to the largest batch, then stays). */
let scratch = new Uint8Array(1 << 20);
/** Reply buffers are allocated in these steps, so recycled ones fit most later batches. */
const OUTPUT_STEP = 256 * 1024;

let currentWindowLog = Number.NaN;

/** The CCtx is reused across frames (much cheaper than one per frame); parameters change only with the level. */
function setLevel(level: number, windowLog: number): void {
  if (level === currentLevel && windowLog === currentWindowLog) return;
  cctx.reset(binding.ResetDirective.parameters);
  cctx.setParameter(binding.CParameter.compressionLevel, level);
  cctx.setParameter(binding.CParameter.checksumFlag, 0);
  cctx.setParameter(binding.CParameter.windowLog, windowLog);
  currentLevel = level;
  currentWindowLog = windowLog;
}

/**
 * Appends one frame to the batch output. Buffers are long-lived and reused: churning
 * multi-MiB allocations across threads makes glibc keep them (RSS grows).
 */
let outPos = 0;
function compressFrame(data: Uint8Array): number {
  const bound = binding.compressBound(data.length);
  if (scratch.length - outPos < bound) {
    const bigger = new Uint8Array(Math.max(outPos + bound, scratch.length * 2));
    bigger.set(scratch.subarray(0, outPos));
    scratch = bigger;
  }
  const n = cctx.compress2(scratch.subarray(outPos), data);
  outPos += n;
  return n;
}

/** One-chunk mode: bytes of the file in progress waiting to fill a frame (one file at a time per worker). */
const heldBuf = new Uint8Array(MAX_PIECE);

interface FileState {
  chunker: RollsumChunker;
  fileHash: Hash;
  /** Content-defined chunks only: one chunk per file has no chunk digest in the TOC. */
  chunkHash: Hash | undefined;
  chunking: boolean;
  crc: Crc64;
  /** One-chunk mode: bytes of this file in heldBuf. */
  heldLen: number;
  started: boolean;
}

const files = new Map<number, FileState>();
let zeroBuf = new Uint8Array(0);

function zeros(n: number): Uint8Array {
  if (zeroBuf.length < n) zeroBuf = new Uint8Array(Math.max(n, 1 << 20));
  return zeroBuf.subarray(0, n);
}

function processPiece(st: FileState, piece: ChunkPiece, result: FrameJobResult): void {
  if (piece.kind === "data") {
    if (piece.first && st.chunking) st.chunkHash = createHash("sha256");
    st.chunkHash?.update(piece.bytes);
    const compressedSize = piece.bytes.length > 0 ? compressFrame(piece.bytes) : 0;
    const frame = {
      compressedSize,
      size: piece.bytes.length,
      first: piece.first,
      last: piece.last,
      zeros: false,
    } as FrameJobResult["frames"][number];
    if (piece.last && st.chunkHash) frame.chunkDigest = `sha256:${st.chunkHash.digest("hex")}`;
    result.frames.push(frame);
  } else {
    const hash = createHash("sha256");
    for (let done = 0; done < piece.length; ) {
      const n = Math.min(MAX_PIECE, piece.length - done);
      const z = zeros(n);
      hash.update(z);
      const frame = {
        compressedSize: compressFrame(z),
        size: n,
        first: done === 0,
        last: done + n === piece.length,
        zeros: true,
      } as FrameJobResult["frames"][number];
      done += n;
      if (frame.last) frame.chunkDigest = `sha256:${hash.digest("hex")}`;
      result.frames.push(frame);
    }
  }
}

function runJob(job: FrameJob, req: WorkerRequest): FrameJobResult {
  setLevel(req.level, req.windowLog);
  if (job.kind === "raw") {
    return {
      frames: [
        {
          compressedSize: compressFrame(job.data),
          size: job.data.length,
          first: true,
          last: true,
          zeros: false,
        },
      ],
    };
  }
  let st = files.get(job.fileId);
  if (!st) {
    st = {
      chunker: new RollsumChunker(MAX_PIECE),
      fileHash: createHash("sha256"),
      chunkHash: undefined,
      chunking: job.chunking,
      crc: new Crc64(),
      heldLen: 0,
      started: false,
    };
    files.set(job.fileId, st);
  }
  const result: FrameJobResult = { frames: [] };
  st.fileHash.update(job.data);
  st.crc.update(job.data);
  let pieces: ChunkPiece[];
  if (job.chunking) {
    pieces = st.chunker.push(job.data);
    if (job.final) st.chunker.finish(pieces);
  } else {
    // One chunk per file, in frames of up to MAX_PIECE (bounded memory, little context lost).
    pieces = [];
    let data = job.data;
    while (data.length > 0) {
      if (st.heldLen === MAX_PIECE) {
        processPiece(st, { kind: "data", bytes: heldBuf, first: !st.started, last: false }, result);
        st.started = true;
        st.heldLen = 0;
      }
      const take = Math.min(data.length, MAX_PIECE - st.heldLen);
      heldBuf.set(data.subarray(0, take), st.heldLen);
      st.heldLen += take;
      data = data.subarray(take);
    }
    if (job.final) {
      pieces.push({ kind: "data", bytes: heldBuf.subarray(0, st.heldLen), first: !st.started, last: true });
      st.started = true;
      st.heldLen = 0;
    }
  }
  for (const piece of pieces) processPiece(st, piece, result);
  if (job.final) {
    result.fileDigest = `sha256:${st.fileHash.digest("hex")}`;
    result.crc = st.crc.digest();
    files.delete(job.fileId);
  }
  return result;
}

parentPort?.on("message", (req: WorkerRequest) => {
  outPos = 0;
  const results = req.jobs.map((job) => runJob(job, req));
  // The frames leave in a buffer of their own: the recycled one the request brought
  // when its size fits (fresh pages cost more to fault in than the copy; a much
  // larger one would hold its pages for a small batch, so it is let go; a batch with
  // no frames, a large file still filling its frame, carries it back as it came).
  const fits = (size: number) =>
    size >= outPos && (outPos === 0 || size <= Math.max(4 * outPos, OUTPUT_STEP));
  const out =
    req.output && fits(req.output.byteLength)
      ? new Uint8Array(req.output)
      : new Uint8Array(Buffer.allocUnsafeSlow(Math.ceil((outPos + 1) / OUTPUT_STEP) * OUTPUT_STEP).buffer);
  out.set(scratch.subarray(0, outPos));
  const frames = out.subarray(0, outPos);
  const reply: WorkerReply = { batchId: req.batchId, results, frames };
  const transfer: ArrayBuffer[] = [out.buffer as ArrayBuffer];
  // The rollsum chunker keeps views of its input between jobs; otherwise the input is free.
  const input = req.jobs[0]?.data.buffer;
  if (input instanceof ArrayBuffer && !req.jobs.some((j) => j.kind === "file" && j.chunking)) {
    reply.recycled = input;
    transfer.push(input);
  }
  parentPort?.postMessage(reply, transfer);
});
