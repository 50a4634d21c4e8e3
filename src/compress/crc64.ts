/**
 * CRC-64/ISO as Go's hash/crc64 with crc64.MakeTable(crc64.ISO) computes it, which
 * tar-split stores for every file. Reflected polynomial 0xD800000000000000, init and
 * final XOR all-ones, result written big-endian. Slicing-by-8 over two 32-bit halves
 * keeps it BigInt-free (hot path: every byte of every layer goes through it).
 */

const TABLE_HI = new Uint32Array(8 * 256);
const TABLE_LO = new Uint32Array(8 * 256);

{
  const POLY_HI = 0xd8000000;
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let k = 0; k < 8; k++) {
      const carry = lo & 1;
      lo = ((lo >>> 1) | (hi << 31)) >>> 0;
      hi = hi >>> 1;
      if (carry) hi = (hi ^ POLY_HI) >>> 0;
    }
    TABLE_HI[i] = hi;
    TABLE_LO[i] = lo;
  }
  for (let t = 1; t < 8; t++) {
    for (let i = 0; i < 256; i++) {
      const prevHi = TABLE_HI[(t - 1) * 256 + i] as number;
      const prevLo = TABLE_LO[(t - 1) * 256 + i] as number;
      const idx = prevLo & 0xff;
      TABLE_HI[t * 256 + i] = ((prevHi >>> 8) ^ (TABLE_HI[idx] as number)) >>> 0;
      TABLE_LO[t * 256 + i] = (((prevLo >>> 8) | (prevHi << 24)) ^ (TABLE_LO[idx] as number)) >>> 0;
    }
  }
}

/** Incremental CRC-64/ISO. */
export class Crc64 {
  private hi = 0xffffffff;
  private lo = 0xffffffff;

  update(data: Uint8Array): this {
    let hi = this.hi;
    let lo = this.lo;
    const n = data.length;
    let i = 0;
    const TH = TABLE_HI;
    const TL = TABLE_LO;
    const end8 = n - (n & 7);
    while (i < end8) {
      const a =
        (lo ^
          (data[i] as number) ^
          ((data[i + 1] as number) << 8) ^
          ((data[i + 2] as number) << 16) ^
          ((data[i + 3] as number) << 24)) >>>
        0;
      const b =
        (hi ^
          (data[i + 4] as number) ^
          ((data[i + 5] as number) << 8) ^
          ((data[i + 6] as number) << 16) ^
          ((data[i + 7] as number) << 24)) >>>
        0;
      const i7 = 7 * 256 + (a & 0xff);
      const i6 = 6 * 256 + ((a >>> 8) & 0xff);
      const i5 = 5 * 256 + ((a >>> 16) & 0xff);
      const i4 = 4 * 256 + (a >>> 24);
      const i3 = 3 * 256 + (b & 0xff);
      const i2 = 2 * 256 + ((b >>> 8) & 0xff);
      const i1 = 256 + ((b >>> 16) & 0xff);
      const i0 = b >>> 24;
      hi =
        ((TH[i7] as number) ^
          (TH[i6] as number) ^
          (TH[i5] as number) ^
          (TH[i4] as number) ^
          (TH[i3] as number) ^
          (TH[i2] as number) ^
          (TH[i1] as number) ^
          (TH[i0] as number)) >>>
        0;
      lo =
        ((TL[i7] as number) ^
          (TL[i6] as number) ^
          (TL[i5] as number) ^
          (TL[i4] as number) ^
          (TL[i3] as number) ^
          (TL[i2] as number) ^
          (TL[i1] as number) ^
          (TL[i0] as number)) >>>
        0;
      i += 8;
    }
    for (; i < n; i++) {
      const idx = (lo ^ (data[i] as number)) & 0xff;
      lo = (((lo >>> 8) | (hi << 24)) ^ (TL[idx] as number)) >>> 0;
      hi = ((hi >>> 8) ^ (TH[idx] as number)) >>> 0;
    }
    this.hi = hi;
    this.lo = lo;
    return this;
  }

  /** The 8-byte big-endian checksum, as tar-split stores it. */
  digest(): Uint8Array {
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, (this.hi ^ 0xffffffff) >>> 0);
    view.setUint32(4, (this.lo ^ 0xffffffff) >>> 0);
    return out;
  }

  hex(): string {
    return Buffer.from(this.digest()).toString("hex");
  }
}

export function crc64(data: Uint8Array): Uint8Array {
  return new Crc64().update(data).digest();
}
