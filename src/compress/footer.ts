/**
 * zstd skippable frames, the zstd:chunked footer (64-byte `GNUlInUx`, and the older
 * 40-byte and 56-byte `GnUlInUx` forms) and the layer descriptor annotations
 * (zstd-chunked.md §2, §3).
 */
import { RootstockError } from "../errors.js";
import { type Digest, isDigest } from "../oci/digest.js";

export const SKIPPABLE_MAGIC = 0x184d2a50;
export const SKIPPABLE_HEADER_SIZE = 8;
export const FOOTER_SIZE = 64;
export const LEGACY_FOOTER_SIZE = 40;
export const MANIFEST_TYPE_CRFS = 1;
/** The blob's last bytes: skippable header + 64-byte footer. */
export const FOOTER_FRAME_SIZE = SKIPPABLE_HEADER_SIZE + FOOTER_SIZE;
const MAGIC_NEW = Buffer.from("GNUlInUx", "latin1");
const MAGIC_OLD = Buffer.from("GnUlInUx", "latin1");

export const ANNOTATION_TOC_CHECKSUM = "io.github.containers.zstd-chunked.manifest-checksum";
export const ANNOTATION_TOC_POSITION = "io.github.containers.zstd-chunked.manifest-position";
export const ANNOTATION_TARSPLIT_POSITION = "io.github.containers.zstd-chunked.tarsplit-position";
export const ANNOTATION_TARSPLIT_CHECKSUM = "io.github.containers.zstd-chunked.tarsplit-checksum";
export const LEGACY_ANNOTATION_TOC_CHECKSUM = "io.containers.zstd-chunked.manifest-checksum";
export const LEGACY_ANNOTATION_TOC_POSITION = "io.containers.zstd-chunked.manifest-position";
export const ESTARGZ_ANNOTATION_TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest";

export function skippableFrameHeader(length: number): Uint8Array {
  if (length > 0xffffffff)
    throw new RootstockError("CHUNKED_FORMAT", `skippable frame of ${length} bytes exceeds 4 GiB`);
  const b = Buffer.alloc(SKIPPABLE_HEADER_SIZE);
  b.writeUInt32LE(SKIPPABLE_MAGIC, 0);
  b.writeUInt32LE(length, 4);
  return b;
}

export interface FooterData {
  tocOffset: number;
  tocLength: number;
  tocUncompressedLength: number;
  manifestType: number;
  /** Absent in footers older than c/storage 1.50. */
  tarSplitOffset?: number;
  tarSplitLength?: number;
  tarSplitUncompressedLength?: number;
  /** 64 (current), 56 (1.47–1.49) or 40 (≤ 1.46). */
  footerSize: number;
}

/** The final skippable frame: header + 64-byte footer. */
export function encodeFooterFrame(f: Required<Omit<FooterData, "footerSize">>): Uint8Array {
  const b = Buffer.alloc(FOOTER_FRAME_SIZE);
  b.writeUInt32LE(SKIPPABLE_MAGIC, 0);
  b.writeUInt32LE(FOOTER_SIZE, 4);
  const vals = [
    f.tocOffset,
    f.tocLength,
    f.tocUncompressedLength,
    f.manifestType,
    f.tarSplitOffset,
    f.tarSplitLength,
    f.tarSplitUncompressedLength,
  ];
  vals.forEach((v, i) => {
    b.writeBigUInt64LE(BigInt(v), 8 + i * 8);
  });
  MAGIC_NEW.copy(b, 8 + 56);
  return b;
}

function u64(b: Buffer, off: number, what: string): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new RootstockError("CHUNKED_FORMAT", `footer ${what} out of range`);
  return Number(v);
}

/**
 * Reads the footer from the blob's last bytes (pass at least the last 72).
 * Returns undefined when the tail carries no zstd:chunked footer. Never trusted:
 * only used to find metadata when annotations are missing.
 */
export function decodeFooter(tail: Uint8Array): FooterData | undefined {
  const b = Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength);
  const tryAt = (size: number): Buffer | undefined => {
    if (b.length < size + SKIPPABLE_HEADER_SIZE) return undefined;
    const start = b.length - size - SKIPPABLE_HEADER_SIZE;
    if (b.readUInt32LE(start) !== SKIPPABLE_MAGIC || b.readUInt32LE(start + 4) !== size) return undefined;
    return b.subarray(start + SKIPPABLE_HEADER_SIZE);
  };
  const f64 = tryAt(FOOTER_SIZE);
  if (f64) {
    const base = {
      tocOffset: u64(f64, 0, "offset"),
      tocLength: u64(f64, 8, "length"),
      tocUncompressedLength: u64(f64, 16, "uncompressed length"),
      manifestType: u64(f64, 24, "type"),
    };
    if (f64.subarray(56, 64).equals(MAGIC_NEW)) {
      return {
        ...base,
        tarSplitOffset: u64(f64, 32, "tar-split offset"),
        tarSplitLength: u64(f64, 40, "tar-split length"),
        tarSplitUncompressedLength: u64(f64, 48, "tar-split uncompressed length"),
        footerSize: 64,
      };
    }
  }
  const f56 = tryAt(56);
  if (f56?.subarray(32, 40).equals(MAGIC_OLD)) {
    return {
      tocOffset: u64(f56, 0, "offset"),
      tocLength: u64(f56, 8, "length"),
      tocUncompressedLength: u64(f56, 16, "uncompressed length"),
      manifestType: u64(f56, 24, "type"),
      footerSize: 56,
    };
  }
  const f40 = tryAt(LEGACY_FOOTER_SIZE);
  if (f40?.subarray(32, 40).equals(MAGIC_OLD)) {
    return {
      tocOffset: u64(f40, 0, "offset"),
      tocLength: u64(f40, 8, "length"),
      tocUncompressedLength: u64(f40, 16, "uncompressed length"),
      manifestType: u64(f40, 24, "type"),
      footerSize: 40,
    };
  }
  return undefined;
}

/** Where the TOC and tar-split sit, from a descriptor's annotations. */
export interface ChunkedPositions {
  generation: "modern" | "legacy";
  tocDigest: Digest;
  tocOffset: number;
  tocLength: number;
  tocUncompressedLength: number;
  tarSplit?: { offset: number; length: number; uncompressedLength: number };
}

export interface ChunkedAnnotationValues {
  tocDigest: Digest;
  tocOffset: number;
  tocLength: number;
  tocUncompressedLength: number;
  tarSplitOffset: number;
  tarSplitLength: number;
  tarSplitUncompressedLength: number;
}

/** The three generation-E annotations, plus the two legacy keys when asked. */
export function chunkedAnnotations(v: ChunkedAnnotationValues, legacy: boolean): Record<string, string> {
  const position = `${v.tocOffset}:${v.tocLength}:${v.tocUncompressedLength}:${MANIFEST_TYPE_CRFS}`;
  const out: Record<string, string> = {
    [ANNOTATION_TOC_CHECKSUM]: v.tocDigest,
    [ANNOTATION_TOC_POSITION]: position,
    [ANNOTATION_TARSPLIT_POSITION]: `${v.tarSplitOffset}:${v.tarSplitLength}:${v.tarSplitUncompressedLength}`,
  };
  if (legacy) {
    out[LEGACY_ANNOTATION_TOC_CHECKSUM] = v.tocDigest;
    out[LEGACY_ANNOTATION_TOC_POSITION] = position;
  }
  return out;
}

function parseFields(value: string, count: number, key: string): number[] {
  const parts = value.split(":");
  if (parts.length !== count || parts.some((p) => !/^\d{1,15}$/.test(p))) {
    throw new RootstockError(
      "CHUNKED_FORMAT",
      `annotation ${key}: expected ${count} decimal fields, got ${JSON.stringify(value)}`,
    );
  }
  return parts.map(Number);
}

/**
 * Reads zstd:chunked positions from annotations: modern keys first, else the
 * legacy ones. Undefined when the layer has neither (plain zstd). Throws on
 * malformed values and on a layer that is both zstd:chunked and eStargz.
 */
export function parseChunkedAnnotations(
  annotations: Record<string, string> | undefined,
): ChunkedPositions | undefined {
  if (!annotations) return undefined;
  const modern = annotations[ANNOTATION_TOC_CHECKSUM] !== undefined;
  const legacy = annotations[LEGACY_ANNOTATION_TOC_CHECKSUM] !== undefined;
  if ((modern || legacy) && annotations[ESTARGZ_ANNOTATION_TOC_DIGEST] !== undefined) {
    throw new RootstockError(
      "CHUNKED_FORMAT",
      "both zstd:chunked and eStargz TOC found in the layer annotations",
    );
  }
  if (!modern && !legacy) return undefined;
  const checksumKey = modern ? ANNOTATION_TOC_CHECKSUM : LEGACY_ANNOTATION_TOC_CHECKSUM;
  const positionKey = modern ? ANNOTATION_TOC_POSITION : LEGACY_ANNOTATION_TOC_POSITION;
  const tocDigest = annotations[checksumKey];
  if (!isDigest(tocDigest))
    throw new RootstockError("CHUNKED_FORMAT", `annotation ${checksumKey}: not a sha256 digest`);
  const position = annotations[positionKey];
  if (position === undefined)
    throw new RootstockError("CHUNKED_FORMAT", `annotation ${positionKey} is missing`);
  const [offset, length, uncompressed, type] = parseFields(position, 4, positionKey) as [
    number,
    number,
    number,
    number,
  ];
  if (type !== MANIFEST_TYPE_CRFS)
    throw new RootstockError(
      "CHUNKED_FORMAT",
      `annotation ${positionKey}: manifest type ${type}, expected 1`,
    );
  const out: ChunkedPositions = {
    generation: modern ? "modern" : "legacy",
    tocDigest,
    tocOffset: offset,
    tocLength: length,
    tocUncompressedLength: uncompressed,
  };
  const ts = modern ? annotations[ANNOTATION_TARSPLIT_POSITION] : undefined;
  if (ts !== undefined) {
    const [o, l, u] = parseFields(ts, 3, ANNOTATION_TARSPLIT_POSITION) as [number, number, number];
    out.tarSplit = { offset: o, length: l, uncompressedLength: u };
  }
  return out;
}
