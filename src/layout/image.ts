/**
 * Reading and moving images through the shared BlobSource / BlobSink interfaces,
 * whatever the backend (store, layout, registry).
 */
import { RootstockError } from "../errors.js";
import type { BlobSink, BlobSource, FileImportingSink, LocalBlobSource } from "../oci/blobs.js";
import { isIndexMediaType, isManifestMediaType } from "../oci/mediatypes.js";
import { type Platform, selectManifest } from "../oci/platform.js";
import {
  checkDiffIds,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  parseImageConfig,
  parseImageDocument,
} from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";

export interface ResolvedImage {
  /** The image manifest's descriptor (after platform selection). */
  descriptor: Descriptor;
  manifest: ImageManifest;
  config: ImageConfig;
}

/**
 * The manifest and config an descriptor leads to: an index is resolved for
 * `platform` (required when the descriptor is an index with several entries).
 */
export async function readImage(
  source: BlobSource,
  descriptor: Descriptor,
  platform?: Platform,
): Promise<ResolvedImage> {
  let desc = descriptor;
  for (let depth = 0; depth < 4; depth++) {
    const bytes = await source.read({ digest: desc.digest, size: desc.size, mediaType: desc.mediaType });
    const doc = parseImageDocument(bytes, desc.mediaType, `manifest ${desc.digest}`);
    if (doc.kind === "manifest") {
      const config = parseImageConfig(
        await source.read({
          digest: doc.manifest.config.digest,
          size: doc.manifest.config.size,
          mediaType: doc.manifest.config.mediaType,
        }),
        `config ${doc.manifest.config.digest}`,
      );
      checkDiffIds(doc.manifest, config, `image ${desc.digest}`);
      return { descriptor: desc, manifest: doc.manifest, config };
    }
    if (platform) desc = selectManifest(doc.index, platform, `index ${desc.digest}`);
    else if (doc.index.manifests.length === 1) desc = doc.index.manifests[0]!;
    else {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `index ${desc.digest}: ${doc.index.manifests.length} manifests; choose a platform`,
      );
    }
  }
  throw new RootstockError("INVALID_FORMAT", `manifest ${descriptor.digest}: indexes nested too deep`);
}

export interface CopyReport {
  copied: number;
  skipped: number;
  bytes: number;
}

/**
 * Copies everything `descriptor` reaches from `source` to `sink`, children before
 * parents (a sink never holds a manifest whose blobs it lacks). Each blob is
 * verified as it is written (and, when streamed, also as it is read).
 */
export interface CopyOptions {
  progress?: ProgressSink;
  /**
   * Between two local backends on one filesystem, hardlink blobs instead of
   * copying them (both sides keep them read-only). Default: kernel copy (reflink
   * where the filesystem can).
   */
  link?: boolean;
}

function isLocalSource(source: BlobSource): source is LocalBlobSource {
  return typeof (source as Partial<LocalBlobSource>).localPath === "function";
}

function isFileImportingSink(sink: BlobSink): sink is FileImportingSink {
  return typeof (sink as Partial<FileImportingSink>).importBlob === "function";
}

export async function copyGraph(
  source: BlobSource,
  sink: BlobSink,
  descriptor: Descriptor,
  opts: CopyOptions = {},
): Promise<CopyReport> {
  const progress = opts.progress ?? silentProgress;
  const local = isLocalSource(source) && isFileImportingSink(sink);
  const report: CopyReport = { copied: 0, skipped: 0, bytes: 0 };
  const done = new Set<string>();
  const visit = async (desc: Descriptor): Promise<void> => {
    if (done.has(desc.digest)) return;
    done.add(desc.digest);
    if (isManifestMediaType(desc.mediaType) || isIndexMediaType(desc.mediaType)) {
      const doc = parseImageDocument(await source.read(desc), desc.mediaType, `manifest ${desc.digest}`);
      const children =
        doc.kind === "index" ? doc.index.manifests : [doc.manifest.config, ...doc.manifest.layers];
      for (const child of children) await visit(child);
    }
    // Non-distributable layers live at their `urls`, not necessarily in the source.
    if ((await sink.has(desc.digest)) || ((desc.urls?.length ?? 0) > 0 && !(await source.has(desc.digest)))) {
      report.skipped++;
      return;
    }
    progress({
      type: "start",
      id: desc.digest,
      label: `copy ${desc.digest.slice(7, 19)}`,
      total: desc.size,
      unit: "bytes",
    });
    const expected = { digest: desc.digest, size: desc.size };
    // Local to local: the kernel moves the bytes, a worker thread verifies them.
    const put =
      local && isLocalSource(source) && isFileImportingSink(sink)
        ? await sink.importBlob(source.localPath(desc.digest), expected, opts.link ? "link" : "copy")
        : await sink.put(await source.open(desc), expected);
    progress({ type: "done", id: desc.digest });
    if (put.existed) report.skipped++;
    else {
      report.copied++;
      report.bytes += put.size;
    }
  };
  await visit(descriptor);
  return report;
}
