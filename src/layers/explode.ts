/**
 * Explode a full layer tar into the store: every regular file's content becomes a
 * file object, the tar's exact bytes minus payloads become a tar-split blob, the
 * headers become TOC-form entries, and the record ties them to the layer's blob.
 * Used for layers without a usable TOC (gzip, zstd, old zstd:chunked) and for any
 * layer whose whole blob is at hand, so those layers dedup too.
 */
import type { ContentStore } from "../cas/store.js";
import { PaddingSegmenter, TarSplitPacker } from "../compress/tarsplit.js";
import { type TocEntry, tocEntryFromHeader } from "../compress/toc.js";
import { ZstdFrameWriter } from "../compress/zstd.js";
import { RootstockError } from "../errors.js";
import { type Digest, Digester, EMPTY_SHA256 } from "../oci/digest.js";
import { readTar } from "../tar/reader.js";
import { FileObjectWriter, type WriterResult } from "./file-writer.js";
import { LAYER_RECORD_VERSION, type LayerRecord } from "./record.js";
import { writeLayerRecord } from "./store.js";

export interface ExplodeOptions {
  /** Called with the payload bytes stored so far (progress). */
  onBytes?: (tarBytes: number) => void;
  /** Payload bytes handed to the file-writer thread and not yet written. Default 16 MiB. */
  inflightBytes?: number;
  /**
   * The stream checks diff_id itself and throws at its end (decodeLayer does):
   * skip hashing the tar a second time.
   */
  streamChecksDiffId?: boolean;
}

export interface ExplodeResult {
  record: LayerRecord;
  files: number;
  /** File objects that were new to the store, and their bytes. */
  newFiles: number;
  newBytes: number;
}

type FileLine = {
  kind: "file";
  name: string;
  size: number;
  crc: Uint8Array | null | undefined;
  nameRaw?: Uint8Array;
};
type PackerLine = { kind: "segment"; bytes: Uint8Array } | FileLine;

/**
 * Reads `tar` to its end, storing file objects as it goes, then checks the tar's
 * sha256 against `diffId` and only then writes the tar-split and the record. A
 * failure leaves only content-addressed file objects behind (no record, no ref):
 * gc removes them. `tar` itself may verify more at its end (decodeLayer checks the
 * blob digest): it is consumed completely before anything is recorded.
 */
export async function explodeLayer(
  store: ContentStore,
  tar: AsyncIterable<Uint8Array>,
  blob: LayerRecord["blob"],
  diffId: Digest,
  opts: ExplodeOptions = {},
): Promise<ExplodeResult> {
  return store.withLease(async () => {
    const inflightBytes = opts.inflightBytes ?? 16 * 1024 * 1024;
    const tarDigest = opts.streamChecksDiffId ? undefined : new Digester();
    let tarSize = 0;
    async function* hashed(): AsyncGenerator<Uint8Array> {
      for await (const c of tar) {
        tarDigest?.update(c);
        tarSize += c.length;
        opts.onBytes?.(tarSize);
        yield c;
      }
    }
    // Level 3: the tar-split is small next to the layer and level 10 costs ~0.1 s per 100 MB of tar.
    const tsWriter = new ZstdFrameWriter(3);
    const packer = new TarSplitPacker((line) => tsWriter.write(line));
    // Tar-split lines in tar order; a file's line waits for its CRC-64 from the writer.
    const lines: PackerLine[] = [];
    const drainLines = () => {
      let i = 0;
      for (; i < lines.length; i++) {
        const line = lines[i] as PackerLine;
        if (line.kind === "segment") packer.segment(line.bytes);
        else if (line.crc === undefined) break;
        else packer.file(line.name, line.size, line.crc, line.nameRaw);
      }
      if (i > 0) lines.splice(0, i);
    };
    const entries: TocEntry[] = [];
    const writer = new FileObjectWriter(store, inflightBytes);
    const results: Promise<void>[] = [];
    let failure: unknown;
    let newFiles = 0;
    let newBytes = 0;
    let files = 0;

    const source = hashed();
    // The reader closes its input after the archive's end; shield the source from that
    // so it can be run to its very end below.
    const reader = readTar({ [Symbol.asyncIterator]: () => ({ next: () => source.next() }) });
    try {
      for await (const te of reader) {
        if (failure) throw failure;
        const h = te.header;
        const entry = tocEntryFromHeader(h);
        const tsSize = h.declaredSize ?? h.size;
        if (h.declaredSize !== undefined) entry.size = h.declaredSize;
        entries.push(entry);
        if (h.size === 0) {
          lines.push({ kind: "segment", bytes: te.headerBytes.slice() });
          lines.push({
            kind: "file",
            name: h.name,
            size: tsSize,
            crc: tsSize > 0 ? new Uint8Array(8) : null,
            nameRaw: h.nameRaw,
          });
          if (entry.type === "reg") entry.digest = EMPTY_SHA256;
          drainLines();
          continue;
        }
        files++;
        lines.push({ kind: "segment", bytes: te.headerBytes.slice() });
        const line: FileLine = {
          kind: "file",
          name: h.name,
          size: tsSize,
          crc: undefined,
          nameRaw: h.nameRaw,
        };
        lines.push(line);
        const id = writer.newFile();
        let taken = 0;
        let done: Promise<WriterResult> | undefined;
        for await (const c of te.payload) {
          taken += c.length;
          done = writer.write(id, c, taken === c.length, taken === h.size);
          await writer.room();
        }
        if (!done) throw new RootstockError("INTERNAL", `${h.name}: payload ended before its size`);
        results.push(
          done.then(
            (r) => {
              entry.digest = r.digest;
              line.crc = r.crc;
              if (!r.existed) {
                newFiles++;
                newBytes += r.size;
              }
              drainLines();
            },
            (err) => {
              failure ??= err;
            },
          ),
        );
      }
      writer.flush();
      await Promise.all(results);
      if (failure) throw failure;
      drainLines();
      const trailer = reader.trailer;
      packer.segment(trailer.endBlocks);
      const padding = new PaddingSegmenter((segment) => packer.segment(segment));
      for await (const chunk of trailer.rest) padding.push(chunk);
      padding.end();
      // Run the stream to its very end: a verifying source (decodeLayer) checks the
      // blob digest and diff_id only after its last byte.
      while (!(await source.next()).done) {}
    } finally {
      await writer.close();
    }
    const got = tarDigest ? tarDigest.digest() : diffId;
    if (got !== diffId)
      throw new RootstockError(
        "DIGEST_MISMATCH",
        `layer ${blob.digest}: tar hashes to ${got}, diff_id says ${diffId}`,
      );
    const zTarSplit = tsWriter.end();
    const ts = await store.putBlob(zTarSplit);
    const record: LayerRecord = {
      version: LAYER_RECORD_VERSION,
      blob,
      diffId,
      tarSize,
      entries,
      tarSplit: { digest: ts.digest, size: ts.size },
    };
    const digests: Digest[] = [];
    for (const e of entries) if (e.type === "reg" && (e.size ?? 0) > 0 && e.digest) digests.push(e.digest);
    await writeLayerRecord(store, record, digests);
    return { record, files, newFiles, newBytes };
  });
}
