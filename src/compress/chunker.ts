/**
 * Content-defined chunking of one file payload, exactly as c/storage's compressor
 * does it (zstd-chunked.md §5): the bup/Perkeep rollsum over the whole file, a chunk
 * ends on the byte where (s2 & 0xFFFF) == 0xFFFF, and every run of >= 1024 zero bytes
 * is a chunk of its own ("zeros"). Streaming: bytes may arrive in any pieces, the
 * boundaries do not move.
 */

export const HOLES_THRESHOLD = 1024;
const WINDOW_SIZE = 64;
const CHAR_OFFSET = 31;
const BOUNDARY_MASK = 0xffff;

/** What the chunker hands out, in order. Data pieces of one chunk never exceed `maxPiece`. */
export type ChunkPiece =
  /** Bytes of a data chunk. `first`: this piece starts a chunk; `last`: it ends one. */
  | { kind: "data"; bytes: Uint8Array; first: boolean; last: boolean }
  /** A whole run of `length` zero bytes (always one complete chunk). */
  | { kind: "zeros"; length: number };

export class RollsumChunker {
  private s1 = WINDOW_SIZE * CHAR_OFFSET;
  private s2 = WINDOW_SIZE * (WINDOW_SIZE - 1) * CHAR_OFFSET;
  private readonly window = new Uint8Array(WINDOW_SIZE);
  private wpos = 0;
  /** Pieces of the current data chunk not yet handed out. */
  private cur: Uint8Array[] = [];
  private curLen = 0;
  /** The current chunk already handed out a piece (it was longer than maxPiece). */
  private curStarted = false;
  /** Zero bytes seen at the end of the input so far, not yet classified. */
  private pendingZeros = 0;

  /** Bytes of the current data chunk, handed out or not. */
  private chunkLen = 0;

  /**
   * `maxPiece` bounds memory for chunks without a boundary (a chunk then spans
   * several pieces). `minChunk` > 0 ignores rollsum boundaries until the chunk has
   * that many bytes (coarser chunks compress better; 0 is exactly §5).
   */
  constructor(
    private readonly maxPiece = 8 * 1024 * 1024,
    private readonly minChunk = 0,
  ) {}

  /** Feeds the next bytes of the file; returns the pieces completed by them. */
  push(data: Uint8Array, out: ChunkPiece[] = []): ChunkPiece[] {
    if (this.pendingZeros > 0) {
      let z = 0;
      while (z < data.length && data[z] === 0) z++;
      if (z === data.length) {
        this.pendingZeros += z;
        return out;
      }
      const total = this.pendingZeros + z;
      this.pendingZeros = 0;
      if (total >= HOLES_THRESHOLD) {
        this.emitZeros(total, out);
        data = data.subarray(z);
      } else {
        const joined = new Uint8Array(total + data.length - z);
        joined.set(data.subarray(z), total);
        data = joined;
      }
    }
    this.scan(data, false, out);
    return out;
  }

  /** Ends the file: returns the remaining pieces. */
  finish(out: ChunkPiece[] = []): ChunkPiece[] {
    if (this.pendingZeros > 0) {
      const total = this.pendingZeros;
      this.pendingZeros = 0;
      if (total >= HOLES_THRESHOLD) this.emitZeros(total, out);
      else this.scan(new Uint8Array(total), true, out);
    }
    this.flushData(out);
    return out;
  }

  private scan(p: Uint8Array, final: boolean, out: ChunkPiece[]): void {
    const n = p.length;
    const win = this.window;
    let s1 = this.s1;
    let s2 = this.s2;
    let wpos = this.wpos;
    let start = 0;
    let i = 0;
    while (i < n) {
      const b = p[i] as number;
      let runEnd = i + 1;
      if (b === 0) {
        while (runEnd < n && p[runEnd] === 0) runEnd++;
        if (runEnd === n && !final) {
          // The run may continue in the next piece: decide later.
          this.s1 = s1;
          this.s2 = s2;
          this.wpos = wpos;
          this.appendData(p.subarray(start, i), out);
          this.pendingZeros = n - i;
          return;
        }
        if (runEnd - i >= HOLES_THRESHOLD) {
          this.s1 = s1;
          this.s2 = s2;
          this.wpos = wpos;
          this.appendData(p.subarray(start, i), out);
          this.emitZeros(runEnd - i, out);
          s1 = this.s1;
          s2 = this.s2;
          wpos = this.wpos;
          i = runEnd;
          start = i;
          continue;
        }
      }
      // Data bytes [i, runEnd): one byte, or a short zero run processed byte by byte.
      for (; i < runEnd; i++) {
        const c = p[i] as number;
        const o = win[wpos] as number;
        s1 = (s1 + c - o) >>> 0;
        s2 = (s2 + s1 - WINDOW_SIZE * (o + CHAR_OFFSET)) >>> 0;
        win[wpos] = c;
        wpos = (wpos + 1) & (WINDOW_SIZE - 1);
        if ((s2 & BOUNDARY_MASK) === BOUNDARY_MASK && this.chunkLen + (i + 1 - start) >= this.minChunk) {
          this.appendData(p.subarray(start, i + 1), out);
          this.flushData(out);
          start = i + 1;
        }
      }
    }
    this.s1 = s1;
    this.s2 = s2;
    this.wpos = wpos;
    this.appendData(p.subarray(start, n), out);
  }

  /** Rolls `count` zeros without boundary tests; after 64 the state is a fixed point. */
  private emitZeros(count: number, out: ChunkPiece[]): void {
    this.flushData(out);
    const win = this.window;
    for (let k = 0; k < Math.min(count, WINDOW_SIZE); k++) {
      const o = win[this.wpos] as number;
      this.s1 = (this.s1 - o) >>> 0;
      this.s2 = (this.s2 + this.s1 - WINDOW_SIZE * (o + CHAR_OFFSET)) >>> 0;
      win[this.wpos] = 0;
      this.wpos = (this.wpos + 1) & (WINDOW_SIZE - 1);
    }
    if (count > WINDOW_SIZE) this.wpos = (this.wpos + count - WINDOW_SIZE) & (WINDOW_SIZE - 1);
    out.push({ kind: "zeros", length: count });
  }

  private appendData(bytes: Uint8Array, out: ChunkPiece[]): void {
    while (bytes.length > 0) {
      const room = this.maxPiece - this.curLen;
      const take = bytes.length <= room ? bytes : bytes.subarray(0, room);
      this.cur.push(take);
      this.curLen += take.length;
      this.chunkLen += take.length;
      bytes = bytes.subarray(take.length);
      if (this.curLen >= this.maxPiece) this.emitCur(false, out);
    }
  }

  private flushData(out: ChunkPiece[]): void {
    if (this.curLen > 0 || this.curStarted) this.emitCur(true, out);
  }

  private emitCur(last: boolean, out: ChunkPiece[]): void {
    const bytes = this.cur.length === 1 ? (this.cur[0] as Uint8Array) : Buffer.concat(this.cur, this.curLen);
    out.push({ kind: "data", bytes, first: !this.curStarted, last });
    this.cur = [];
    this.curLen = 0;
    this.curStarted = !last;
    if (last) this.chunkLen = 0;
  }
}

/** A chunk of a file: its place in the file and its kind. */
export interface ChunkSpan {
  offset: number;
  size: number;
  zeros: boolean;
}

/** Chunk list of a whole in-memory payload (tests and small files). */
export function chunkSpans(payload: Uint8Array, pieceSize?: number, minChunk = 0): ChunkSpan[] {
  const chunker = new RollsumChunker(8 * 1024 * 1024, minChunk);
  const pieces: ChunkPiece[] = [];
  const step = pieceSize ?? (payload.length || 1);
  for (let off = 0; off < payload.length; off += step)
    chunker.push(payload.subarray(off, off + step), pieces);
  chunker.finish(pieces);
  const spans: ChunkSpan[] = [];
  let offset = 0;
  for (const piece of pieces) {
    if (piece.kind === "zeros") {
      spans.push({ offset, size: piece.length, zeros: true });
      offset += piece.length;
    } else {
      if (piece.first) spans.push({ offset, size: 0, zeros: false });
      const last = spans[spans.length - 1] as ChunkSpan;
      last.size += piece.bytes.length;
      offset += piece.bytes.length;
    }
  }
  return spans;
}
