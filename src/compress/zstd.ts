/**
 * Thin synchronous helpers over zstd-napi's binding: one streaming frame built
 * piece by piece (for metadata of unbounded size), and a frame-by-frame streaming
 * decoder for untrusted input with an output limit.
 */
import { createRequire } from "node:module";
import { RootstockError } from "../errors.js";

// zstd-napi/binding is CommonJS without named exports: load it through require.
export const zstdBinding = createRequire(import.meta.url)(
  "zstd-napi/binding",
) as typeof import("zstd-napi/binding.js");
const b = zstdBinding;

/** Window limit for every frame we write and read (8 MiB, §A.10). */
export const WINDOW_LOG = 23;

/** One zstd frame compressed incrementally; output is collected in memory (it is small). */
const PENDING = 64 * 1024;

export class ZstdFrameWriter {
  private readonly cctx = new b.CCtx();
  private readonly out: Uint8Array[] = [];
  private readonly buf = new Uint8Array(1 << 17);
  // Small writes (tar-split lines) are gathered: one native call per 64 KiB, not per line.
  private readonly pending = new Uint8Array(PENDING);
  private pendingLength = 0;
  compressedSize = 0;
  size = 0;

  /**
   * `tables` caps the match finder's hash and chain tables (log2 entries): a stream
   * of unknown length otherwise gets the level's full-size tables (tens of MB to
   * allocate and clear at level 10, for a few MB of metadata).
   */
  constructor(level: number, tables?: { hashLog: number; chainLog: number }) {
    this.cctx.setParameter(b.CParameter.compressionLevel, level);
    this.cctx.setParameter(b.CParameter.windowLog, WINDOW_LOG);
    if (tables) {
      this.cctx.setParameter(b.CParameter.hashLog, tables.hashLog);
      this.cctx.setParameter(b.CParameter.chainLog, tables.chainLog);
    }
  }

  write(data: Uint8Array): void {
    this.size += data.length;
    if (this.pendingLength + data.length <= PENDING) {
      this.pending.set(data, this.pendingLength);
      this.pendingLength += data.length;
      return;
    }
    this.drain();
    if (data.length < PENDING) {
      this.pending.set(data, 0);
      this.pendingLength = data.length;
    } else this.run(data, b.EndDirective.continue);
  }

  end(): Uint8Array {
    this.drain();
    this.run(new Uint8Array(0), b.EndDirective.end);
    return Buffer.concat(this.out, this.compressedSize);
  }

  private drain(): void {
    if (this.pendingLength === 0) return;
    this.run(this.pending.subarray(0, this.pendingLength), b.EndDirective.continue);
    this.pendingLength = 0;
  }

  private run(data: Uint8Array, op: number): void {
    let src = data;
    for (;;) {
      const [remaining, produced, consumed] = this.cctx.compressStream2(this.buf, src, op);
      if (produced > 0) {
        this.out.push(this.buf.slice(0, produced));
        this.compressedSize += produced;
      }
      src = src.subarray(consumed);
      if (op === b.EndDirective.end ? remaining === 0 : src.length === 0) return;
    }
  }
}

/**
 * Compresses one whole buffer as a single frame, in one call: zstd knows the size, so
 * its tables fit the input and the frame records its content size.
 */
export function zstdCompress(data: Uint8Array, level: number): Uint8Array {
  const cctx = new b.CCtx();
  cctx.setParameter(b.CParameter.compressionLevel, level);
  cctx.setParameter(b.CParameter.windowLog, WINDOW_LOG); // a cap: zstd shrinks it to the input
  const out = Buffer.allocUnsafe(b.compressBound(data.length));
  return out.subarray(0, cctx.compress2(out, data));
}

/**
 * Streaming decoder over a sequence of frames (skippable frames are skipped by
 * zstd itself). Fails on truncated input and when output exceeds `maxOutput`.
 */
export class ZstdStreamDecoder {
  private readonly dctx = new b.DCtx();
  private readonly buf: Uint8Array;
  private inFrame = false;
  produced = 0;

  constructor(
    public what: string,
    private readonly maxOutput = Number.MAX_SAFE_INTEGER,
    bufSize = 1 << 18,
  ) {
    this.dctx.setParameter(b.DParameter.windowLogMax, WINDOW_LOG + 4);
    this.buf = new Uint8Array(bufSize);
  }

  /** Decodes `data`, calling `sink` with fresh output chunks. */
  write(data: Uint8Array, sink: (chunk: Uint8Array) => void): void {
    let src = data;
    while (src.length > 0) {
      let ret: number;
      let produced: number;
      let consumed: number;
      try {
        [ret, produced, consumed] = this.dctx.decompressStream(this.buf, src);
      } catch (err) {
        throw new RootstockError("COMPRESSION", `${this.what}: zstd: ${(err as Error).message}`, {
          cause: err,
        });
      }
      src = src.subarray(consumed);
      if (produced > 0) {
        this.produced += produced;
        if (this.produced > this.maxOutput) {
          throw new RootstockError(
            "SIZE_MISMATCH",
            `${this.what}: decompresses to more than ${this.maxOutput} bytes`,
          );
        }
        sink(this.buf.slice(0, produced));
      }
      this.inFrame = ret !== 0;
      if (consumed === 0 && produced === 0) break;
    }
    // Flush output that is ready without more input.
    while (this.inFrame) {
      const [ret, produced] = this.dctx.decompressStream(this.buf, new Uint8Array(0));
      if (produced === 0) break;
      this.produced += produced;
      if (this.produced > this.maxOutput) {
        throw new RootstockError(
          "SIZE_MISMATCH",
          `${this.what}: decompresses to more than ${this.maxOutput} bytes`,
        );
      }
      sink(this.buf.slice(0, produced));
      this.inFrame = ret !== 0;
    }
  }

  /**
   * One-shot decode of complete frames that must produce exactly `size` bytes, into
   * one exact-size buffer (no per-256 KiB copies). `undefined` when they do not (more
   * or less output, corrupt data): the caller then streams to get the precise error.
   */
  decodeExact(src: Uint8Array, size: number): Uint8Array | undefined {
    const out = Buffer.allocUnsafe(size);
    try {
      return this.dctx.decompress(out, src) === size ? out : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Decodes complete frames into one buffer that grows as needed: no copy per
   * 256 KiB of output and no concatenation at the end (TOCs and tar-splits are MBs).
   */
  decodeAll(data: Uint8Array): Uint8Array {
    const cap = this.maxOutput + 1; // one byte more than allowed, to notice the excess
    // A known size (the annotations give it) is allocated at once: growing by doubling
    // copies the output and touches fresh pages several times over.
    let out = Buffer.allocUnsafe(cap <= KNOWN_SIZE_LIMIT ? cap : Math.max(64 * 1024, data.length * 4));
    let pos = 0;
    let src = data;
    for (;;) {
      if (pos === out.length) {
        // Filled exactly, input used up and the last frame complete: done.
        if (src.length === 0 && !this.inFrame) break;
        const bigger = Buffer.allocUnsafe(Math.min(out.length * 2, cap));
        bigger.set(out);
        out = bigger;
      }
      let ret: number;
      let produced: number;
      let consumed: number;
      try {
        [ret, produced, consumed] = this.dctx.decompressStream(out.subarray(pos), src);
      } catch (err) {
        throw new RootstockError("COMPRESSION", `${this.what}: zstd: ${(err as Error).message}`, {
          cause: err,
        });
      }
      pos += produced;
      src = src.subarray(consumed);
      // A call that moved nothing says nothing about the frame (after a frame's end it
      // already asks for the next frame's header).
      if (produced > 0 || consumed > 0) this.inFrame = ret !== 0;
      if (pos > this.maxOutput) {
        throw new RootstockError(
          "SIZE_MISMATCH",
          `${this.what}: decompresses to more than ${this.maxOutput} bytes`,
        );
      }
      // Room was left in the output: everything the input allows has been flushed.
      if (pos < out.length && (src.length === 0 || (consumed === 0 && produced === 0))) break;
    }
    this.end();
    return out.subarray(0, pos);
  }

  /** Forgets any partial frame, to decode an unrelated range next. */
  reset(): void {
    this.dctx.reset(b.ResetDirective.sessionOnly);
    this.inFrame = false;
    this.produced = 0;
  }

  /** Checks the input ended on a frame boundary. */
  end(): void {
    if (this.inFrame) throw new RootstockError("COMPRESSION", `${this.what}: truncated zstd frame`);
  }
}

const idleDecoders: ZstdStreamDecoder[] = [];

/**
 * A decoder from a small shared pool: a zstd context is ~1 ms of fresh pages to set
 * up, more than decoding a typical file. Give it back with `releaseDecoder`.
 */
export function takeDecoder(what: string): ZstdStreamDecoder {
  const decoder = idleDecoders.pop() ?? new ZstdStreamDecoder(what);
  decoder.what = what;
  return decoder;
}

/** Returns a decoder (any partial frame forgotten) to the pool. */
export function releaseDecoder(decoder: ZstdStreamDecoder): void {
  decoder.reset();
  if (idleDecoders.length < 8) idleDecoders.push(decoder);
}

/** Up to this size, a decodeAll output bound is allocated whole (unused pages cost nothing). */
const KNOWN_SIZE_LIMIT = 256 * 1024 * 1024;

/** Decompresses a complete buffer of frames, up to `maxOutput` bytes. */
export function zstdDecompress(data: Uint8Array, what: string, maxOutput?: number): Uint8Array {
  // One frame that declares its size (ours all do) is decoded in one call into that
  // size, with a pooled context: no streaming window, no growing output buffer.
  let declared: number | null = null;
  try {
    declared = b.getFrameContentSize(data);
  } catch {
    // Not a frame header: the streaming decode below words the error.
  }
  if (declared !== null && declared <= (maxOutput ?? KNOWN_SIZE_LIMIT)) {
    const decoder = takeDecoder(what);
    try {
      const out = decoder.decodeExact(data, declared);
      if (out) return out;
    } finally {
      releaseDecoder(decoder);
    }
  }
  return new ZstdStreamDecoder(what, maxOutput).decodeAll(data);
}
