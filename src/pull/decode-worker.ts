/**
 * A zstd layer decoded on a worker thread: the worker decompresses the blob and
 * hashes the tar while the main thread parses the tar and stores file objects, so a
 * full pull uses two cores. The stream throws at its end when the blob's size or the
 * tar's diff_id do not match; the blob's digest is the blob stream's own check
 * (every PullSource stream verifies itself). Inline CommonJS worker (as cas/hashpool.ts): nothing to
 * resolve under tsx or from dist; the zstd binding's path is passed in.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const b = require(workerData.binding);
const dctx = new b.DCtx();
dctx.setParameter(b.DParameter.windowLogMax, 27);
const tarHash = createHash("sha256");
let blobSize = 0, tarSize = 0, inFrame = false;
const OUT = 1 << 20;
// Output buffers: the main thread sends each back once the tar reader is past it, so
// the worker keeps decoding into the same pages (fresh ones cost a fault each).
const pool = [];
const take = () => new Uint8Array(pool.pop() || new ArrayBuffer(OUT));
parentPort.on("message", (msg) => {
  try {
    if (msg.free) for (const b of msg.free) pool.push(b);
    if (msg.end) {
      if (inFrame) throw new Error("truncated zstd frame");
      parentPort.postMessage({ done: true, blobSize,
        tarDigest: "sha256:" + tarHash.digest("hex"), tarSize });
      return;
    }
    const input = msg.chunk;
    blobSize += input.length;
    const outs = [];
    let src = input;
    let cur = take();
    let pos = 0;
    for (;;) {
      const space = OUT - pos;
      const [ret, produced, consumed] = dctx.decompressStream(cur.subarray(pos), src);
      src = src.subarray(consumed);
      if (produced > 0) {
        tarHash.update(cur.subarray(pos, pos + produced));
        tarSize += produced;
        pos += produced;
        if (pos === OUT) {
          outs.push(cur);
          cur = take();
          pos = 0;
        }
      }
      inFrame = ret !== 0;
      if (src.length === 0 && (produced < space || !inFrame)) break;
      if (consumed === 0 && produced === 0) break;
    }
    if (pos > 0) outs.push(cur.subarray(0, pos));
    else pool.push(cur.buffer);
    // The input is consumed: its buffer goes back to be filled again.
    parentPort.postMessage({ outs, recycled: input.buffer }, [...outs.map((o) => o.buffer), input.buffer]);
  } catch (err) {
    parentPort.postMessage({ error: String((err && err.message) || err) });
  }
});
`;

const BATCH = 1024 * 1024;
const IN_FLIGHT = 4;
const HELD_OUTPUTS = 4;
const BINDING = createRequire(import.meta.url).resolve("zstd-napi/binding");

interface Reply {
  outs?: Uint8Array[];
  recycled?: ArrayBuffer;
  error?: string;
  done?: boolean;
  blobSize?: number;
  tarDigest?: Digest;
  tarSize?: number;
}

/** Decodes a tar+zstd blob (any zstd:chunked too) from a self-verifying stream on a worker. */
export async function* decodeZstdOnWorker(
  blob: AsyncIterable<Uint8Array>,
  desc: { digest: Digest; size: number },
  diffId: Digest,
): AsyncGenerator<Uint8Array> {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { binding: BINDING } });
  const free: ArrayBuffer[] = [];
  const replies: Reply[] = [];
  let wake: (() => void) | undefined;
  let failure: unknown;
  worker.on("message", (r: Reply) => {
    replies.push(r);
    wake?.();
  });
  worker.on("error", (err) => {
    failure = err;
    wake?.();
  });
  const next = async (): Promise<Reply> => {
    while (replies.length === 0) {
      if (failure) throw new RootstockError("COMPRESSION", `layer ${desc.digest}: ${String(failure)}`);
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = undefined;
    }
    const r = replies.shift() as Reply;
    if (r.recycled && free.length < IN_FLIGHT + 2) free.push(r.recycled);
    if (r.error) throw new RootstockError("COMPRESSION", `layer ${desc.digest}: zstd: ${r.error}`);
    return r;
  };
  try {
    // Network chunks (64 KiB) are gathered into 1 MiB batches, transferred; up to
    // four in flight keep the worker busy while this thread parses what came back.
    let pending = 0;
    let batch = new Uint8Array(BATCH);
    let filled = 0;
    // Yielded outputs not yet given back: the consumer (the tar reader) may still read
    // the last few, as with readFileChunks' ring of four; older ones go back to the worker.
    const held: Uint8Array[] = [];
    let giveBack: ArrayBuffer[] = [];
    /** The outputs of the next reply, each remembered once the consumer has taken it. */
    const emitNext = async function* (): AsyncGenerator<Uint8Array> {
      for (const out of (await next()).outs ?? []) {
        yield out;
        held.push(out);
        if (held.length > HELD_OUTPUTS) giveBack.push((held.shift() as Uint8Array).buffer as ArrayBuffer);
      }
    };
    const send = () => {
      const outputs = giveBack;
      giveBack = [];
      worker.postMessage({ chunk: batch.subarray(0, filled), free: outputs }, [batch.buffer, ...outputs]);
      const reuse = free.pop();
      batch = reuse ? new Uint8Array(reuse) : new Uint8Array(BATCH);
      filled = 0;
      pending++;
    };
    for await (const chunk of blob) {
      for (let at = 0; at < chunk.length; ) {
        const take = Math.min(chunk.length - at, BATCH - filled);
        batch.set(chunk.subarray(at, at + take), filled);
        filled += take;
        at += take;
        if (filled === BATCH) send();
      }
      for (; pending >= IN_FLIGHT; pending--) yield* emitNext();
    }
    if (filled > 0) send();
    for (; pending > 0; pending--) yield* emitNext();
    worker.postMessage({ end: true });
    const end = await next();
    if (end.blobSize !== desc.size)
      throw new RootstockError(
        "SIZE_MISMATCH",
        `layer ${desc.digest}: blob has ${end.blobSize} bytes, descriptor says ${desc.size}`,
      );
    if (end.tarDigest !== diffId)
      throw new RootstockError(
        "DIGEST_MISMATCH",
        `layer ${desc.digest}: tar hashes to ${end.tarDigest}, diff_id says ${diffId}`,
      );
  } finally {
    await worker.terminate();
  }
}
