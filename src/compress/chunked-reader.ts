/**
 * zstd:chunked reader and verifier (zstd-chunked.md §B, §9, §10). The chain:
 * annotations → sha256(Z_TOC) == manifest-checksum → strict TOC → sha256(Z_TS) ==
 * tarSplitDigest → TOC/tar-split agreement → each file's sha256 → the tar rebuilt
 * from tar-split + files (CRC-64 checked) hashes to diff_id. The footer is never
 * trusted. Byte access goes through a `RangeReader`, so the pull module can feed
 * fetched ranges and a local blob file works the same way.
 */
import { open } from "node:fs/promises";
import { RootstockError } from "../errors.js";
import { type Digest, Digester, EMPTY_SHA256, sha256 } from "../oci/digest.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { readTar } from "../tar/reader.js";
import {
  type ChunkedPositions,
  decodeFooter,
  FOOTER_FRAME_SIZE,
  parseChunkedAnnotations,
  SKIPPABLE_HEADER_SIZE,
  SKIPPABLE_MAGIC,
} from "./footer.js";
import {
  assembleTar,
  parseTarSplit,
  TARSPLIT_FILE,
  TARSPLIT_SEGMENT,
  type TarSplitEntry,
} from "./tarsplit.js";
import { type FileRanges, fileRanges, parseToc, type Toc, type TocEntry, tocEntryMismatch } from "./toc.js";
import { releaseDecoder, takeDecoder, zstdDecompress } from "./zstd.js";

/** c/storage's maxTocSize: larger metadata means a full pull. */
export const MAX_TOC_SIZE = 150 * 1024 * 1024;

/** Reads [start, end) of a blob. */
export type RangeReader = (start: number, end: number) => Promise<Uint8Array>;

export interface LayerDescriptorLike {
  digest?: Digest;
  size: number;
  annotations?: Record<string, string>;
}

export interface ChunkedMetadata {
  positions: ChunkedPositions;
  toc: Toc;
  /** Parsed tar-split (generation E); absent for older generations (then only listing works). */
  tarSplit?: TarSplitEntry[];
  /** Why a partial pull is impossible (then read the layer as plain zstd), if it is. */
  fullPullReason?: string;
}

/**
 * Frames that the annotations say decompress to `size` bytes: decoded in one call
 * straight into one buffer of that size (a streaming decode first fills a window
 * buffer as large as the frame's content, fresh pages every pull); when they do not
 * fit it exactly, streamed again for the precise error.
 */
function decompressExactly(z: Uint8Array, what: string, size: number): Uint8Array {
  const decoder = takeDecoder(what);
  try {
    return decoder.decodeExact(z, size) ?? zstdDecompress(z, what, size);
  } finally {
    releaseDecoder(decoder);
  }
}

function chunkedError(msg: string): RootstockError {
  return new RootstockError("CHUNKED_FORMAT", msg);
}

function checkSkippableHeader(bytes: Uint8Array, at: number, length: number, what: string): void {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    at < 0 ||
    at + 8 > b.length ||
    b.readUInt32LE(at) !== SKIPPABLE_MAGIC ||
    b.readUInt32LE(at + 4) !== length
  ) {
    throw chunkedError(`${what}: no skippable frame header of length ${length} before it`);
  }
}

/** The positions from annotations, or (untrusted, for listing only) from the footer. */
export async function locateChunkedMetadata(
  read: RangeReader,
  desc: LayerDescriptorLike,
): Promise<{ positions: ChunkedPositions; trusted: boolean } | undefined> {
  const fromAnnotations = parseChunkedAnnotations(desc.annotations);
  if (fromAnnotations) return { positions: fromAnnotations, trusted: true };
  if (desc.size < FOOTER_FRAME_SIZE) return undefined;
  const tail = await read(Math.max(0, desc.size - FOOTER_FRAME_SIZE), desc.size);
  const footer = decodeFooter(tail);
  if (footer === undefined) return undefined;
  if (footer.manifestType !== 1) return undefined;
  const tocBytes = await read(footer.tocOffset, footer.tocOffset + footer.tocLength);
  const positions: ChunkedPositions = {
    generation: footer.footerSize === 64 ? "modern" : "legacy",
    tocDigest: sha256(tocBytes),
    tocOffset: footer.tocOffset,
    tocLength: footer.tocLength,
    tocUncompressedLength: footer.tocUncompressedLength,
  };
  if (footer.tarSplitOffset !== undefined) {
    positions.tarSplit = {
      offset: footer.tarSplitOffset,
      length: footer.tarSplitLength ?? 0,
      uncompressedLength: footer.tarSplitUncompressedLength ?? 0,
    };
  }
  return { positions, trusted: false };
}

/**
 * Reads and verifies the TOC and tar-split (§9.1). Returns undefined for a layer
 * with no zstd:chunked metadata at all (a plain zstd layer: read it in full).
 */
export async function readChunkedMetadata(
  read: RangeReader,
  desc: LayerDescriptorLike,
  opts: { allowFooter?: boolean } = {},
): Promise<ChunkedMetadata | undefined> {
  const located = await locateChunkedMetadata(read, desc);
  if (!located) return undefined;
  if (!located.trusted && !opts.allowFooter) return undefined;
  const p = located.positions;
  const blobEnd = desc.size;
  if (p.tocLength > MAX_TOC_SIZE || p.tocUncompressedLength > MAX_TOC_SIZE) {
    throw chunkedError(
      `TOC of ${p.tocLength}/${p.tocUncompressedLength} bytes exceeds the ${MAX_TOC_SIZE}-byte limit`,
    );
  }
  if (p.tocOffset < SKIPPABLE_HEADER_SIZE || p.tocOffset + p.tocLength > blobEnd) {
    throw chunkedError(`TOC position ${p.tocOffset}+${p.tocLength} is outside the ${blobEnd}-byte blob`);
  }
  let end = p.tocOffset + p.tocLength;
  const ts = p.tarSplit;
  if (ts) {
    if (ts.length > MAX_TOC_SIZE || ts.uncompressedLength > 8 * MAX_TOC_SIZE) {
      throw chunkedError(`tar-split of ${ts.length} bytes exceeds the limit`);
    }
    if (ts.offset !== end + SKIPPABLE_HEADER_SIZE || ts.offset + ts.length > blobEnd) {
      throw chunkedError(
        `tar-split position ${ts.offset}+${ts.length} does not follow the TOC inside the blob`,
      );
    }
    end = ts.offset + ts.length;
  }
  // One range: the TOC, the 8-byte skippable header between, the tar-split.
  const start = p.tocOffset - SKIPPABLE_HEADER_SIZE;
  const bytes = await read(start, end);
  if (bytes.length !== end - start)
    throw chunkedError(`short read of the metadata: ${bytes.length} of ${end - start} bytes`);
  checkSkippableHeader(bytes, 0, p.tocLength, "TOC");
  const zToc = bytes.subarray(SKIPPABLE_HEADER_SIZE, SKIPPABLE_HEADER_SIZE + p.tocLength);
  const tocDigest = sha256(zToc);
  if (tocDigest !== p.tocDigest) {
    throw new RootstockError(
      "DIGEST_MISMATCH",
      `TOC: compressed TOC hashes to ${tocDigest}, manifest-checksum says ${p.tocDigest}`,
    );
  }
  const tocJson = decompressExactly(zToc, "TOC", p.tocUncompressedLength);
  if (tocJson.length !== p.tocUncompressedLength) {
    throw new RootstockError(
      "SIZE_MISMATCH",
      `TOC: decompresses to ${tocJson.length} bytes, annotation says ${p.tocUncompressedLength}`,
    );
  }
  const toc = parseToc(Buffer.from(tocJson).toString("utf8"), {
    dataEnd: p.tocOffset - SKIPPABLE_HEADER_SIZE,
  });
  const meta: ChunkedMetadata = { positions: p, toc };
  if (!ts) {
    meta.fullPullReason = "no tar-split (older zstd:chunked generation)";
    return meta;
  }
  if (!toc.tarSplitDigest) {
    meta.fullPullReason = "the TOC carries no tarSplitDigest (zstd:chunked before c/storage 1.54)";
    return meta;
  }
  const zTs = bytes.subarray(ts.offset - start, ts.offset - start + ts.length);
  checkSkippableHeader(bytes, ts.offset - start - SKIPPABLE_HEADER_SIZE, ts.length, "tar-split");
  const tsDigest = sha256(zTs);
  if (tsDigest !== toc.tarSplitDigest) {
    throw new RootstockError(
      "DIGEST_MISMATCH",
      `tar-split: hashes to ${tsDigest}, TOC tarSplitDigest says ${toc.tarSplitDigest}`,
    );
  }
  const tsJson = decompressExactly(zTs, "tar-split", ts.uncompressedLength);
  if (tsJson.length !== ts.uncompressedLength) {
    throw new RootstockError(
      "SIZE_MISMATCH",
      `tar-split: decompresses to ${tsJson.length} bytes, annotation says ${ts.uncompressedLength}`,
    );
  }
  meta.tarSplit = [...parseTarSplit(tsJson)];
  await checkTocMatchesTarSplit(toc, meta.tarSplit);
  return meta;
}

const ZERO_CHUNK = new Uint8Array(1 << 20);

/**
 * ensureTOCMatchesTarSplit (§9.1 step 5): the headers the tar-split rebuilds and the
 * TOC's non-chunk entries correspond one to one, with equal metadata.
 */
export async function checkTocMatchesTarSplit(toc: Toc, tarSplit: TarSplitEntry[]): Promise<void> {
  const byName = new Map<string, TocEntry>();
  for (const e of toc.entries) {
    if (e.type === "chunk") continue;
    if (byName.has(e.name)) throw chunkedError(`TOC contains duplicate entries: ${JSON.stringify(e.name)}`);
    byName.set(e.name, e);
  }
  // Rebuild header bytes with zero payloads of the size each parsed header asks for.
  let payloadSize = 0;
  async function* synthetic(): AsyncGenerator<Uint8Array> {
    for (const e of tarSplit) {
      if (e.type === TARSPLIT_SEGMENT) {
        if (e.payload.length > 0) yield e.payload;
      } else {
        for (let left = payloadSize; left > 0; left -= ZERO_CHUNK.length)
          yield ZERO_CHUNK.subarray(0, Math.min(left, ZERO_CHUNK.length));
        payloadSize = 0;
      }
    }
  }
  const files = tarSplit.filter((e) => e.type === TARSPLIT_FILE);
  let i = 0;
  try {
    for await (const entry of readTar(synthetic())) {
      const h = entry.header;
      const tsFile = files[i++];
      if (!tsFile || tsFile.name !== h.name) {
        throw chunkedError(
          `tar-split file record ${JSON.stringify(tsFile?.name)} does not match its header ${JSON.stringify(h.name)}`,
        );
      }
      payloadSize = h.size;
      const e = byName.get(h.name);
      if (!e) throw chunkedError(`tar-split entry ${JSON.stringify(h.name)} is missing from the TOC`);
      const field = tocEntryMismatch(e, h);
      if (field)
        throw chunkedError(
          `TOC entry ${JSON.stringify(h.name)} does not match the tar-split: ${field} differs`,
        );
      byName.delete(h.name);
    }
  } catch (err) {
    if (err instanceof RootstockError && err.code !== "CHUNKED_FORMAT") {
      throw chunkedError(`tar-split does not rebuild a valid tar: ${err.message}`);
    }
    throw err;
  }
  if (i !== files.length)
    throw chunkedError(`tar-split has ${files.length - i} file records after the end of the archive`);
  const left = byName.keys().next();
  if (!left.done) throw chunkedError(`TOC entry ${JSON.stringify(left.value)} is not in the tar-split`);
}

/** Chunks up to this size are decoded in one call into an exact-size buffer. */
const EXACT_DECODE_LIMIT = 16 * 1024 * 1024;

/**
 * Decodes one file from its frames and verifies its sha256 against the TOC.
 * `read` returns the bytes of one range (e.g. from a ranged GET). Zero chunks are
 * produced locally and never read. Yields exactly `size` bytes.
 */
export async function* decodeFile(file: FileRanges, read: RangeReader): AsyncGenerator<Uint8Array> {
  const e = file.entry;
  const digest = new Digester();
  const what = `file ${JSON.stringify(e.name)}`;
  for (const r of file.ranges) {
    if (r.zeros) {
      for (let left = r.size; left > 0; left -= ZERO_CHUNK.length) {
        const z = ZERO_CHUNK.subarray(0, Math.min(left, ZERO_CHUNK.length));
        digest.update(z);
        yield z;
      }
      continue;
    }
    if (r.end <= r.start) throw chunkedError(`${what}: empty frame range at ${r.start}`);
    const compressed = await read(r.start, r.end);
    const decoder = takeDecoder(what);
    // Fast path: the range decodes to exactly this chunk (the usual case).
    const exact = r.size <= EXACT_DECODE_LIMIT ? decoder.decodeExact(compressed, r.size) : undefined;
    if (exact) {
      releaseDecoder(decoder);
      digest.update(exact);
      yield exact;
      continue;
    }
    const out: Uint8Array[] = [];
    // Only `size` bytes count: a range ending at the next entry's offset may hold more (§9.2).
    decoder.reset();
    let taken = 0;
    decoder.write(compressed, (c) => {
      if (taken >= r.size) return;
      const piece = c.length > r.size - taken ? c.subarray(0, r.size - taken) : c;
      taken += piece.length;
      out.push(piece);
    });
    releaseDecoder(decoder);
    if (taken !== r.size)
      throw new RootstockError(
        "SIZE_MISMATCH",
        `${what}: chunk at ${r.fileOffset} decodes to ${taken} bytes, expected ${r.size}`,
      );
    for (const piece of out) {
      digest.update(piece);
      yield piece;
    }
  }
  const expected = e.digest ?? EMPTY_SHA256;
  const got = digest.digest();
  if (got !== expected)
    throw new RootstockError("DIGEST_MISMATCH", `${what}: content hashes to ${got}, TOC says ${expected}`);
}

const READ_AHEAD = 4 * 1024 * 1024;

/** A RangeReader over a local file, and its closer. */
export async function fileRangeReader(
  path: string,
): Promise<{ read: RangeReader; size: number; close: () => Promise<void> }> {
  const handle = await open(path, "r");
  const size = (await handle.stat()).size;
  // Verification reads thousands of small ranges in blob order: serve them from 4 MiB
  // read-ahead blocks (a fresh buffer per block, so earlier views stay valid).
  let block: Uint8Array = new Uint8Array(0);
  let blockStart = 0;
  const read: RangeReader = async (start, end) => {
    if (start < 0 || end > size || end < start)
      throw chunkedError(`range ${start}-${end} is outside the ${size}-byte blob`);
    if (start >= blockStart && end <= blockStart + block.length)
      return block.subarray(start - blockStart, end - blockStart);
    if (end - start <= READ_AHEAD / 4) {
      block = await readRange(start, Math.min(size, start + READ_AHEAD));
      blockStart = start;
      if (end <= blockStart + block.length) return block.subarray(0, end - start);
    }
    return readRange(start, end);
  };
  const readRange = async (start: number, end: number): Promise<Uint8Array> => {
    const buf = Buffer.allocUnsafe(end - start);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await handle.read(buf, got, buf.length - got, start + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  };
  return { read, size, close: () => handle.close() };
}

/**
 * The tar rebuilt from tar-split + files (each file decoded from its frames and
 * digest-checked, each payload CRC-64-checked). Its sha256 must be diff_id.
 */
export function rebuildTar(meta: ChunkedMetadata, read: RangeReader): AsyncGenerator<Uint8Array> {
  if (!meta.tarSplit) throw chunkedError("layer has no verified tar-split: it can only be read in full");
  const byName = new Map<string, FileRanges>();
  for (const f of fileRanges(meta.toc, meta.positions.tocOffset - SKIPPABLE_HEADER_SIZE))
    byName.set(f.entry.name, f);
  return assembleTar(meta.tarSplit, (name, size) => {
    const f = byName.get(name);
    if (!f || f.entry.size !== size)
      throw chunkedError(`tar-split file ${JSON.stringify(name)} (${size} bytes) has no matching TOC file`);
    return decodeFile(f, read);
  });
}

/**
 * Full verification of a zstd:chunked blob through the TOC reading (what a partial
 * pull relies on): metadata chain, every file, rebuilt tar == diff_id.
 * `progress` gets the rebuilt bytes.
 */
export async function verifyChunkedBlob(
  read: RangeReader,
  desc: LayerDescriptorLike,
  diffId: Digest,
  progress: ProgressSink = silentProgress,
): Promise<ChunkedMetadata> {
  const meta = await readChunkedMetadata(read, desc);
  if (!meta) throw chunkedError("layer has no zstd:chunked annotations");
  if (meta.fullPullReason)
    throw chunkedError(`layer cannot be verified through its TOC: ${meta.fullPullReason}`);
  const d = new Digester();
  progress({ type: "start", id: "verify", label: "verify zstd:chunked", unit: "bytes" });
  for await (const chunk of rebuildTar(meta, read)) {
    d.update(chunk);
    progress({ type: "advance", id: "verify", current: d.size });
  }
  const got = d.digest();
  if (got !== diffId) {
    throw new RootstockError(
      "DIGEST_MISMATCH",
      `rebuilt tar hashes to ${got}, config diff_id says ${diffId}`,
    );
  }
  progress({ type: "done", id: "verify" });
  return meta;
}
