/**
 * CRC-64/ISO as Go's hash/crc64 with crc64.MakeTable(crc64.ISO) computes it, which
 * tar-split stores for every file. Reflected polynomial 0xD800000000000000, init and
 * final XOR all-ones, result written big-endian. Slicing-by-16 over two 32-bit halves
 * (1.4x slicing-by-8's speed here: one fold per 16 bytes) keeps it BigInt-free (hot path: every payload byte of every layer goes through it).
 * Everything stays int32 (Int32Array tables, no `>>> 0`): V8 then keeps the values
 * unboxed, ~2.5x faster than uint32 arithmetic, which spills above 2^31 to doubles.
 * Aligned input is read as little-endian 32-bit words.
 */
import { endianness } from "node:os";

const SLICES = 16;
const TABLE_HI = new Int32Array(SLICES * 256);
const TABLE_LO = new Int32Array(SLICES * 256);
const LITTLE_ENDIAN = endianness() === "LE";

{
  const POLY_HI = 0xd8000000 | 0;
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let k = 0; k < 8; k++) {
      const carry = lo & 1;
      lo = (lo >>> 1) | (hi << 31);
      hi = hi >>> 1;
      if (carry) hi ^= POLY_HI;
    }
    TABLE_HI[i] = hi;
    TABLE_LO[i] = lo;
  }
  for (let t = 1; t < SLICES; t++) {
    for (let i = 0; i < 256; i++) {
      const prevHi = TABLE_HI[(t - 1) * 256 + i] as number;
      const prevLo = TABLE_LO[(t - 1) * 256 + i] as number;
      const idx = prevLo & 0xff;
      TABLE_HI[t * 256 + i] = (prevHi >>> 8) ^ (TABLE_HI[idx] as number);
      TABLE_LO[t * 256 + i] = ((prevLo >>> 8) | (prevHi << 24)) ^ (TABLE_LO[idx] as number);
    }
  }
}

/** Incremental CRC-64/ISO. */
export class Crc64 {
  private hi = -1;
  private lo = -1;

  update(data: Uint8Array): this {
    const TH = TABLE_HI;
    const TL = TABLE_LO;
    let hi = this.hi;
    let lo = this.lo;
    const n = data.length;
    let i = 0;
    // Bytewise up to a 4-byte boundary, then 16 bytes (four words) per step.
    const head = LITTLE_ENDIAN ? Math.min(n, (4 - (data.byteOffset & 3)) & 3) : n;
    for (; i < head; i++) {
      const idx = (lo ^ (data[i] as number)) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ (TL[idx] as number);
      hi = (hi >>> 8) ^ (TH[idx] as number);
    }
    const quads = (n - i) >>> 4;
    if (quads > 0) {
      const w = new Int32Array(data.buffer, data.byteOffset + i, quads * 4);
      const m = quads * 4;
      for (let j = 0; j < m; j += 4) {
        // The state folds into the first 8 bytes; table k advances a byte by k zero bytes.
        const a = lo ^ (w[j] as number);
        const b = hi ^ (w[j + 1] as number);
        const c = w[j + 2] as number;
        const d = w[j + 3] as number;
        hi =
          (TH[3840 + (a & 0xff)] as number) ^
          (TH[3584 + ((a >>> 8) & 0xff)] as number) ^
          (TH[3328 + ((a >>> 16) & 0xff)] as number) ^
          (TH[3072 + (a >>> 24)] as number) ^
          (TH[2816 + (b & 0xff)] as number) ^
          (TH[2560 + ((b >>> 8) & 0xff)] as number) ^
          (TH[2304 + ((b >>> 16) & 0xff)] as number) ^
          (TH[2048 + (b >>> 24)] as number) ^
          (TH[1792 + (c & 0xff)] as number) ^
          (TH[1536 + ((c >>> 8) & 0xff)] as number) ^
          (TH[1280 + ((c >>> 16) & 0xff)] as number) ^
          (TH[1024 + (c >>> 24)] as number) ^
          (TH[768 + (d & 0xff)] as number) ^
          (TH[512 + ((d >>> 8) & 0xff)] as number) ^
          (TH[256 + ((d >>> 16) & 0xff)] as number) ^
          (TH[d >>> 24] as number);
        lo =
          (TL[3840 + (a & 0xff)] as number) ^
          (TL[3584 + ((a >>> 8) & 0xff)] as number) ^
          (TL[3328 + ((a >>> 16) & 0xff)] as number) ^
          (TL[3072 + (a >>> 24)] as number) ^
          (TL[2816 + (b & 0xff)] as number) ^
          (TL[2560 + ((b >>> 8) & 0xff)] as number) ^
          (TL[2304 + ((b >>> 16) & 0xff)] as number) ^
          (TL[2048 + (b >>> 24)] as number) ^
          (TL[1792 + (c & 0xff)] as number) ^
          (TL[1536 + ((c >>> 8) & 0xff)] as number) ^
          (TL[1280 + ((c >>> 16) & 0xff)] as number) ^
          (TL[1024 + (c >>> 24)] as number) ^
          (TL[768 + (d & 0xff)] as number) ^
          (TL[512 + ((d >>> 8) & 0xff)] as number) ^
          (TL[256 + ((d >>> 16) & 0xff)] as number) ^
          (TL[d >>> 24] as number);
      }
      i += quads * 16;
    }
    for (; i < n; i++) {
      const idx = (lo ^ (data[i] as number)) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ (TL[idx] as number);
      hi = (hi >>> 8) ^ (TH[idx] as number);
    }
    this.hi = hi;
    this.lo = lo;
    return this;
  }

  /** The 8-byte big-endian checksum, as tar-split stores it. */
  digest(): Uint8Array {
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, ~this.hi >>> 0);
    view.setUint32(4, ~this.lo >>> 0);
    return out;
  }

  hex(): string {
    return Buffer.from(this.digest()).toString("hex");
  }
}

export function crc64(data: Uint8Array): Uint8Array {
  return new Crc64().update(data).digest();
}
