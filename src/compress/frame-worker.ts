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
let scratch = new Uint8Array(1 << 20);

function setLevel(level: number, windowLog: number): void {
  if (level === currentLevel) return;
  cctx.reset(binding.ResetDirective.parameters);
  cctx.setParameter(binding.CParameter.compressionLevel, level);
  cctx.setParameter(binding.CParameter.checksumFlag, 0);
  cctx.setParameter(binding.CParameter.windowLog, windowLog);
  currentLevel = level;
}

/** Appends one frame to `out`. */
function compressFrame(data: Uint8Array, out: Uint8Array[]): number {
  const bound = binding.compressBound(data.length);
  if (scratch.length < bound) scratch = new Uint8Array(Math.max(bound, scratch.length * 2));
  const n = cctx.compress2(scratch, data);
  out.push(scratch.slice(0, n));
  return n;
}

interface FileState {
  chunker: RollsumChunker;
  fileHash: Hash;
  chunkHash: Hash | undefined;
  crc: Crc64;
  /** One-chunk mode: bytes waiting to fill a frame. */
  held: Uint8Array[];
  heldLen: number;
  started: boolean;
}

const files = new Map<number, FileState>();
let zeroBuf = new Uint8Array(0);

function zeros(n: number): Uint8Array {
  if (zeroBuf.length < n) zeroBuf = new Uint8Array(Math.max(n, 1 << 20));
  return zeroBuf.subarray(0, n);
}

function runJob(job: FrameJob, out: Uint8Array[]): FrameJobResult {
  if (job.kind === "raw") {
    return {
      frames: [
        {
          compressedSize: compressFrame(job.data, out),
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
      crc: new Crc64(),
      held: [],
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
    if (job.data.length > 0) {
      st.held.push(job.data);
      st.heldLen += job.data.length;
    }
    if (st.heldLen >= MAX_PIECE || job.final) {
      pieces.push({
        kind: "data",
        bytes: Buffer.concat(st.held, st.heldLen),
        first: !st.started,
        last: job.final,
      });
      st.started = true;
      st.held = [];
      st.heldLen = 0;
    }
  }
  for (const piece of pieces) {
    if (piece.kind === "data") {
      if (piece.first) st.chunkHash = createHash("sha256");
      st.chunkHash?.update(piece.bytes);
      const compressedSize = piece.bytes.length > 0 ? compressFrame(piece.bytes, out) : 0;
      const frame = {
        compressedSize,
        size: piece.bytes.length,
        first: piece.first,
        last: piece.last,
        zeros: false,
      } as FrameJobResult["frames"][number];
      if (piece.last) frame.chunkDigest = `sha256:${(st.chunkHash as Hash).digest("hex")}`;
      result.frames.push(frame);
    } else {
      const hash = createHash("sha256");
      for (let done = 0; done < piece.length; ) {
        const n = Math.min(MAX_PIECE, piece.length - done);
        const z = zeros(n);
        hash.update(z);
        const frame = {
          compressedSize: compressFrame(z, out),
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
  if (job.final) {
    result.fileDigest = `sha256:${st.fileHash.digest("hex")}`;
    result.crc = st.crc.digest();
    files.delete(job.fileId);
  }
  return result;
}

parentPort?.on("message", (req: WorkerRequest) => {
  setLevel(req.level, req.windowLog);
  const out: Uint8Array[] = [];
  const results = req.jobs.map((job) => runJob(job, out));
  let total = 0;
  for (const f of out) total += f.length;
  const buffer = new Uint8Array(total);
  let pos = 0;
  for (const f of out) {
    buffer.set(f, pos);
    pos += f.length;
  }
  const reply: WorkerReply = { batchId: req.batchId, results, frames: buffer };
  parentPort?.postMessage(reply, [buffer.buffer]);
});
