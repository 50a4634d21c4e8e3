/**
 * `pullImage`: an image from a registry or an OCI layout into the store, fetching
 * only the file contents the store lacks.
 *
 * Per layer: already recorded → skipped. zstd:chunked (generation E) → the TOC and
 * tar-split in one range, verified (TOC digest → tar-split digest → TOC/tar-split
 * agreement), the plan (reuse file objects by digest, never fetch zero chunks),
 * the missing frames in parallel single-range GETs, each file decoded and checked
 * against its TOC digest as it becomes a file object, then the tar rebuilt from the
 * tar-split and the file objects (CRC-64 per file) and hashed: it must be the
 * config's diff_id. Other layers (gzip, zstd, older zstd:chunked), and zstd:chunked
 * layers whose missing part is most of the blob, are streamed whole (blob digest
 * and diff_id verified) and exploded into file objects, so they dedup too.
 *
 * Nothing becomes visible before it is verified: file objects are content-addressed
 * and checked one by one, so they may land before their layer verifies (a failed
 * pull leaves them unreferenced and gc removes them); the layer record is written
 * only after the diff_id check, and the config, manifest and ref only after every
 * layer is recorded. The whole pull holds a store lease, so gc cannot run between.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { ContentStore } from "../cas/store.js";
import { type ChunkedMetadata, readChunkedMetadata } from "../compress/chunked-reader.js";
import { parseChunkedAnnotations, SKIPPABLE_HEADER_SIZE } from "../compress/footer.js";
import { compressionOf, decodeLayer } from "../compress/layer.js";
import { type FileRanges, fileRanges, type TocEntry } from "../compress/toc.js";
import { releaseDecoder, takeDecoder } from "../compress/zstd.js";
import { forEachLimit } from "../concurrency.js";
import { RootstockError } from "../errors.js";
import { explodeLayer } from "../layers/explode.js";
import { assembleFromStore } from "../layers/rebuild.js";
import { LAYER_RECORD_VERSION, type LayerRecord } from "../layers/record.js";
import { readLayerRecord, writeLayerRecord } from "../layers/store.js";
import { readImage } from "../layout/image.js";
import type { BlobRef } from "../oci/blobs.js";
import { acceptBorrowedChunks } from "../oci/borrow.js";
import { type Digest, Digester } from "../oci/digest.js";
import { hostPlatform, type Platform } from "../oci/platform.js";
import type { Descriptor } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { Arrivals } from "./arrivals.js";
import { decodeZstdOnWorker } from "./decode-worker.js";
import { type PlanOptions, type PullPlan, planPull } from "./plan.js";
import type { PullSource } from "./source.js";

export interface PullOptions extends PlanOptions {
  /** Platform to choose from an index (default: this machine's). */
  platform?: Platform;
  progress?: ProgressSink;
  /** Store repository and tag to point at the pulled manifest (no ref when absent). */
  destination?: { repository: string; tag: string };
  /** Range requests in flight per layer. Default 6. */
  fetchConcurrency?: number;
  /** Layers pulled at once. Default 2. */
  layerConcurrency?: number;
  /**
   * A zstd:chunked layer is streamed whole instead when the frames to fetch exceed
   * this share of the blob. Default 0.7; 1 never streams a usable TOC layer whole.
   */
  fullPullThreshold?: number;
}

export type LayerAction = "recorded" | "partial" | "full" | "local";

export interface LayerPullReport {
  digest: Digest;
  size: number;
  action: LayerAction;
  /** Why a layer was read in full (no usable TOC, most of it missing, …). */
  reason?: string;
  files: number;
  filesFetched: number;
  bytesFetchedUncompressed: number;
  filesReused: number;
  bytesReused: number;
  /** Bytes read from the source for this layer (metadata, frames, or the whole blob). */
  bytesRead: number;
}

export interface PullReport {
  source: string;
  /** The image manifest now in the store. */
  digest: Digest;
  destination?: { repository: string; tag: string };
  layers: LayerPullReport[];
  bytesRead: number;
  filesFetched: number;
  filesReused: number;
  layersSkipped: number;
}

const MB = 1024 * 1024;
const DEFAULT_FULL_PULL_THRESHOLD = 0.7;

async function storeHasNoFiles(store: ContentStore): Promise<boolean> {
  const fanout = await readdir(join(store.root, "files", "sha256")).catch(() => [] as string[]);
  return fanout.length === 0;
}
const mb = (n: number) => `${(n / MB).toFixed(1)} MB`;

export async function pullImage(
  source: PullSource,
  store: ContentStore,
  opts: PullOptions = {},
): Promise<PullReport> {
  const progress = opts.progress ?? silentProgress;
  return store.withLease(async () => {
    const root = await source.resolveRoot();
    const documents = {
      read: (blob: BlobRef) => source.read(blob),
      open: (blob: BlobRef) => source.open(blob),
      has: async () => true,
      size: async () => -1,
    };
    const image = await readImage(documents, root, opts.platform ?? hostPlatform());
    const { manifest, config } = image;
    const layers = manifest.layers;
    const reports: LayerPullReport[] = new Array(layers.length);
    let next = 0;
    const worker = async () => {
      while (next < layers.length) {
        const i = next++;
        reports[i] = await pullLayer(
          source,
          store,
          layers[i]!,
          config.rootfs.diff_ids[i] as Digest,
          opts,
          progress,
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.layerConcurrency ?? 2, layers.length) }, worker));

    // Every layer is recorded: now the documents, then the ref.
    const configBytes = await source.read({ digest: manifest.config.digest, size: manifest.config.size });
    await store.putBlob(configBytes, { digest: manifest.config.digest, size: manifest.config.size });
    const manifestBytes = await source.read({ digest: image.descriptor.digest, size: image.descriptor.size });
    await store.putBlob(manifestBytes, { digest: image.descriptor.digest, size: image.descriptor.size });
    const descriptor: Descriptor = {
      mediaType: image.descriptor.mediaType,
      digest: image.descriptor.digest,
      size: image.descriptor.size,
    };
    if (opts.destination) await store.setRef(opts.destination.repository, opts.destination.tag, descriptor);
    const report: PullReport = {
      source: source.name,
      digest: image.descriptor.digest,
      layers: reports,
      bytesRead: reports.reduce((n, r) => n + r.bytesRead, 0),
      filesFetched: reports.reduce((n, r) => n + r.filesFetched, 0),
      filesReused: reports.reduce((n, r) => n + r.filesReused, 0),
      layersSkipped: reports.filter((r) => r.action === "recorded").length,
    };
    if (opts.destination) report.destination = opts.destination;
    return report;
  });
}

/** Prefixes errors with the layer they concern (one line, the entry named inside). */
function inLayer(layer: Descriptor, err: unknown): unknown {
  if (err instanceof RootstockError && !err.message.startsWith("layer "))
    return new RootstockError(err.code, `layer ${layer.digest}: ${err.message}`, { cause: err });
  return err;
}

async function pullLayer(
  source: PullSource,
  store: ContentStore,
  layer: Descriptor,
  diffId: Digest,
  opts: PullOptions,
  progress: ProgressSink,
): Promise<LayerPullReport> {
  const report: LayerPullReport = {
    digest: layer.digest,
    size: layer.size,
    action: "recorded",
    files: 0,
    filesFetched: 0,
    bytesFetchedUncompressed: 0,
    filesReused: 0,
    bytesReused: 0,
    bytesRead: 0,
  };
  const existing = await readLayerRecord(store, layer.digest);
  if (existing) {
    if (existing.diffId !== diffId)
      throw new RootstockError(
        "DIGEST_MISMATCH",
        `layer ${layer.digest}: config diff_id ${diffId}, recorded ${existing.diffId}`,
      );
    for (const e of existing.entries) {
      if (e.type !== "reg" || !e.size) continue;
      report.files++;
      report.filesReused++;
      report.bytesReused += e.size;
    }
    progress({ type: "note", message: `layer ${short(layer.digest)}: already in the store` });
    return report;
  }
  try {
    if (await store.hasBlob(layer.digest)) {
      report.action = "local";
      report.reason = "the blob is in the store";
      return await explodeFull(await store.openBlob(layer), store, layer, diffId, report, progress);
    }
    let meta: ChunkedMetadata | undefined;
    let metaBytes: { start: number; bytes: Uint8Array } | undefined;
    // No zstd:chunked annotations: not even a footer probe, the blob is read whole.
    if (parseChunkedAnnotations(layer.annotations) === undefined) {
      report.action = "full";
      report.reason = "no zstd:chunked TOC";
      return await explodeFull(await source.open(layer), store, layer, diffId, report, progress);
    }
    // An empty store reuses nothing: one stream beats parsing the TOC to learn that.
    if ((opts.fullPullThreshold ?? DEFAULT_FULL_PULL_THRESHOLD) < 1 && (await storeHasNoFiles(store))) {
      report.action = "full";
      report.reason = "the store holds no file objects yet";
      return await explodeFull(await source.open(layer), store, layer, diffId, report, progress);
    }
    meta = await readChunkedMetadata(async (start, end) => {
      const bytes = await source.readRange(layer.digest, start, end);
      report.bytesRead += bytes.length;
      metaBytes = { start, bytes };
      return bytes;
    }, layer);
    if (!meta || meta.fullPullReason || !meta.tarSplit || !metaBytes) {
      report.action = "full";
      report.reason = meta ? (meta.fullPullReason ?? "no tar-split") : "no zstd:chunked TOC";
      return await explodeFull(await source.open(layer), store, layer, diffId, report, progress);
    }
    const tsPos = meta.positions.tarSplit!;
    const zTarSplit = metaBytes.bytes.subarray(
      tsPos.offset - metaBytes.start,
      tsPos.offset - metaBytes.start + tsPos.length,
    );
    const files = fileRanges(meta.toc, meta.positions.tocOffset - SKIPPABLE_HEADER_SIZE);
    const have = new Set<Digest>();
    for (const d of unique(files.map((f) => f.entry.digest as Digest))) if (store.hasFileSync(d)) have.add(d);
    const plan = planPull(files, have, opts);
    report.files = plan.files;
    report.filesReused = plan.reusedFiles;
    report.bytesReused = plan.reusedBytes;
    report.filesFetched = plan.needed.length;
    report.bytesFetchedUncompressed = plan.neededBytes;
    progress({
      type: "note",
      message: `layer ${short(layer.digest)}: files needed ${plan.needed.length} (${mb(plan.neededBytes)}) / reused ${plan.reusedFiles} (${mb(plan.reusedBytes)})`,
    });
    if (plan.spanBytes > (opts.fullPullThreshold ?? DEFAULT_FULL_PULL_THRESHOLD) * layer.size) {
      report.action = "full";
      report.reason = `${mb(plan.spanBytes)} of ${mb(layer.size)} to fetch: one stream is cheaper`;
      return await explodeFull(await source.open(layer), store, layer, diffId, report, progress);
    }
    report.action = "partial";
    // The chain's last link, the tar rebuilt from tar-split + file objects is diff_id,
    // runs while the files arrive: it reads what the store had at once and waits only
    // at a file still being fetched (an update's fetch is mostly waiting on the network).
    const entries = recordEntries(meta.toc.entries);
    const arrivals = new Arrivals(plan.needed.map((f) => f.file.entry.digest as Digest));
    const stop = { requested: false };
    const fetching = fetchFiles(source, store, layer, plan, opts, progress, report, {
      stored: (digest) => arrivals.arrived(digest),
      stop,
    }).then(
      () => arrivals.finish(),
      (err: unknown) => {
        arrivals.fail(err);
        throw err;
      },
    );
    const verifying = verifyRebuilt(store, meta.tarSplit, entries, diffId, layer, progress, (digest) =>
      arrivals.wait(digest),
    ).catch((err: unknown) => {
      stop.requested = true; // no more spans: the layer fails anyway
      throw err;
    });
    const [fetched, verified] = await Promise.allSettled([fetching, verifying]);
    // A failed fetch fails the verification too: its own error is the one to report.
    if (fetched.status === "rejected") throw fetched.reason;
    if (verified.status === "rejected") throw verified.reason;
    const tarSize = verified.value;
    const ts = await store.putBlob(zTarSplit);
    const record: LayerRecord = {
      version: LAYER_RECORD_VERSION,
      blob: layerBlob(layer),
      diffId,
      tarSize,
      entries,
      tarSplit: { digest: ts.digest, size: ts.size },
    };
    await writeLayerRecord(
      store,
      record,
      files.map((f) => f.entry.digest as Digest),
    );
    return report;
  } catch (err) {
    throw inLayer(layer, err);
  }
}

/** Hashes the tar rebuilt from tar-split + file objects against diff_id; its size. */
async function verifyRebuilt(
  store: ContentStore,
  tarSplit: NonNullable<ChunkedMetadata["tarSplit"]>,
  entries: TocEntry[],
  diffId: Digest,
  layer: Descriptor,
  progress: ProgressSink,
  ready: (digest: Digest) => Promise<void> | undefined,
): Promise<number> {
  const id = `verify ${layer.digest}`;
  progress({ type: "start", id, label: `verify ${short(layer.digest)}`, unit: "bytes" });
  let tarSize = 0;
  // Only counted here (assembleFromStore hashes it): one read buffer for every file.
  for await (const chunk of assembleFromStore(store, tarSplit, entries, diffId, `layer ${layer.digest}`, {
    reuseBuffer: true,
    ready,
  })) {
    tarSize += chunk.length;
    if ((tarSize & 0xffffff) < chunk.length) progress({ type: "advance", id, current: tarSize });
  }
  progress({ type: "done", id });
  return tarSize;
}

function layerBlob(layer: Descriptor): LayerRecord["blob"] {
  return {
    digest: layer.digest,
    size: layer.size,
    mediaType: layer.mediaType,
    ...(layer.annotations ? { annotations: layer.annotations } : {}),
  };
}

/** TOC entries as a record keeps them: one per header, no payload offsets or chunks. */
function recordEntries(toc: TocEntry[]): TocEntry[] {
  const out: TocEntry[] = [];
  for (const e of toc) {
    if (e.type === "chunk") continue;
    const {
      offset: _o,
      endOffset: _e,
      chunkSize: _s,
      chunkOffset: _c,
      chunkDigest: _d,
      chunkType: _t,
      ...rest
    } = e;
    out.push(rest);
  }
  return out;
}

async function explodeFull(
  blob: AsyncIterable<Uint8Array>,
  store: ContentStore,
  layer: Descriptor,
  diffId: Digest,
  report: LayerPullReport,
  progress: ProgressSink,
): Promise<LayerPullReport> {
  const id = `layer ${layer.digest}`;
  progress({
    type: "start",
    id,
    label: `${report.action} ${short(layer.digest)}`,
    total: layer.size,
    unit: "bytes",
  });
  let read = 0;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const c of blob) {
      read += c.length;
      progress({ type: "advance", id, current: read, total: layer.size });
      yield c;
    }
  }
  // zstd on a worker thread (two cores); gzip and plain tar through compress's decoder.
  // Every PullSource stream (registry, layout, store) verifies the blob's digest itself.
  if (layer.annotations) parseChunkedAnnotations(layer.annotations); // refuses zstd:chunked + eStargz
  const zstd = compressionOf(layer.mediaType) === "zstd";
  // The zstd path copies each chunk into its batch before asking for the next.
  if (zstd) acceptBorrowedChunks(blob);
  const tar = zstd ? decodeZstdOnWorker(counted(), layer, diffId) : decodeLayer(counted(), layer, diffId);
  const result = await explodeLayer(store, tar, layerBlob(layer), diffId, {
    streamChecksDiffId: true,
  });
  if (report.action !== "local") report.bytesRead += read;
  report.files = result.files;
  report.filesFetched = result.newFiles;
  report.bytesFetchedUncompressed = result.newBytes;
  report.filesReused = result.files - result.newFiles;
  let total = 0;
  for (const e of result.record.entries) if (e.type === "reg") total += e.size ?? 0;
  report.bytesReused = total - result.newBytes;
  progress({ type: "done", id, summary: report.reason ?? "" });
  return report;
}

async function fetchFiles(
  source: PullSource,
  store: ContentStore,
  layer: Descriptor,
  plan: PullPlan,
  opts: PullOptions,
  progress: ProgressSink,
  report: LayerPullReport,
  hooks: { stored?: (digest: Digest) => void; stop?: { requested: boolean } } = {},
): Promise<void> {
  const id = `fetch ${layer.digest}`;
  progress({
    type: "start",
    id,
    label: `fetch ${short(layer.digest)}`,
    total: plan.spanBytes,
    unit: "bytes",
  });
  let fetched = 0;
  // Files made of zero chunks only need no bytes at all.
  const stored = (file: FileRanges) => hooks.stored?.(file.entry.digest as Digest);
  for (const f of plan.needed) {
    if (f.extent) continue;
    await storeFile(store, f.file, undefined, 0);
    stored(f.file);
  }
  await forEachLimit(plan.spans, opts.fetchConcurrency ?? 6, async (span) => {
    if (hooks.stop?.requested) return;
    const bytes = await source.readRange(layer.digest, span.start, span.end);
    fetched += bytes.length;
    report.bytesRead += bytes.length;
    progress({ type: "advance", id, current: fetched, total: plan.spanBytes });
    for (const f of span.files) {
      await storeFile(store, f.file, bytes, span.start);
      stored(f.file);
    }
  });
  progress({ type: "done", id });
}

/** Decodes one file from fetched frames (zero chunks made locally) and stores it, verified. */
async function storeFile(
  store: ContentStore,
  file: FileRanges,
  span: Uint8Array | undefined,
  spanStart: number,
): Promise<void> {
  const e = file.entry;
  const what = `file ${JSON.stringify(e.name)}`;
  const digest = e.digest as Digest;
  const size = e.size ?? 0;
  const hash = new Digester();
  async function* content(): AsyncGenerator<Uint8Array> {
    for (const r of file.ranges) {
      if (r.zeros) {
        for (let left = r.size; left > 0; left -= ZEROS.length) {
          const z = ZEROS.subarray(0, Math.min(left, ZEROS.length));
          hash.update(z);
          yield z;
        }
        continue;
      }
      if (!span || r.start < spanStart || r.end > spanStart + span.length || r.end <= r.start)
        throw new RootstockError(
          "CHUNKED_FORMAT",
          `${what}: frame range ${r.start}-${r.end} was not fetched`,
        );
      const compressed = span.subarray(r.start - spanStart, r.end - spanStart);
      const decoder = takeDecoder(what);
      let taken = 0;
      // Feed the frames in slices so a large file never sits decoded in memory.
      for (let at = 0; at < compressed.length && taken < r.size; at += DECODE_SLICE) {
        const out: Uint8Array[] = [];
        decoder.write(compressed.subarray(at, at + DECODE_SLICE), (c) => {
          if (taken >= r.size) return;
          const piece = c.length > r.size - taken ? c.subarray(0, r.size - taken) : c;
          taken += piece.length;
          out.push(piece);
        });
        for (const piece of out) {
          hash.update(piece);
          yield piece;
        }
      }
      if (taken !== r.size)
        throw new RootstockError(
          "SIZE_MISMATCH",
          `${what}: chunk at ${r.fileOffset} decodes to ${taken} bytes, TOC says ${r.size}`,
        );
      releaseDecoder(decoder);
    }
    const got = hash.digest();
    if (got !== digest)
      throw new RootstockError("DIGEST_MISMATCH", `${what}: content hashes to ${got}, TOC says ${digest}`);
  }
  try {
    if (size > SMALL_FILE) await store.putFile(content(), { digest, size });
    else {
      // Small files (nearly all of an update) whole, stored in blocking calls.
      const bytes = Buffer.allocUnsafe(size);
      let at = 0;
      for await (const piece of content()) {
        if (at + piece.length > size)
          throw new RootstockError("SIZE_MISMATCH", `${what}: chunks decode to more than its ${size} bytes`);
        bytes.set(piece, at);
        at += piece.length;
      }
      await store.putFile(bytes, { digest, size });
    }
  } catch (err) {
    // The store's own size/digest check names the object; name the entry instead.
    if (err instanceof RootstockError && !err.message.startsWith(what))
      throw new RootstockError(err.code, `${what}: ${err.message}`, { cause: err });
    throw err;
  }
}

const ZEROS = new Uint8Array(1 << 20);
const DECODE_SLICE = 256 * 1024;
/** Files up to this size are decoded whole and stored in one blocking write. */
const SMALL_FILE = 1 << 20;

function short(d: Digest): string {
  return d.slice(7, 19);
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}
