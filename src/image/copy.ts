/**
 * `rootstock copy SRC DST`: moves an image (or a whole index) between endpoints,
 * children before parents, skipping what the destination has and mounting what it
 * can. With `compression`, layers in another format are decoded (verified against
 * their diff_id) and re-encoded on the way: the config and its diff_ids stay the
 * same, the manifest gets the new layer descriptors.
 */

import { parseChunkedAnnotations } from "../compress/footer.js";
import type { Compression } from "../compress/layer.js";
import { forEachLimit } from "../concurrency.js";
import { RootstockError } from "../errors.js";
import { readImage } from "../layout/image.js";
import { serialiseIndex, serialiseManifest } from "../oci/canonical.js";
import type { Digest } from "../oci/digest.js";
import { isNondistributable, layerCompression, MediaType } from "../oci/mediatypes.js";
import { type Platform, selectManifest } from "../oci/platform.js";
import { type Descriptor, type ImageManifest, parseImageDocument } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import type { Endpoint, Transfer } from "./endpoint.js";

export interface CopyOptions {
  /** Re-encode layers that are not already in this format. */
  compression?: Compression;
  /** zstd:chunked fast level. */
  fast?: boolean;
  /** Copy only this platform's manifest out of an index. */
  platform?: Platform;
  progress?: ProgressSink;
}

export interface BlobReport {
  digest: Digest;
  size: number;
  action: Transfer | "re-encoded";
  /** For re-encoded layers: the source layer. */
  from?: Digest;
}

export interface CopyReport {
  source: string;
  destination: string;
  /** What the destination tag now points at. */
  digest: Digest;
  mediaType: string;
  blobs: BlobReport[];
  bytesSent: number;
  bytesSkipped: number;
  bytesMounted: number;
}

/** The format name of a layer as `--compression` spells it. */
export function layerFormat(desc: Descriptor): Compression | undefined {
  const c = layerCompression(desc.mediaType);
  if (c === undefined) return undefined;
  if (c === "zstd" && parseChunkedAnnotations(desc.annotations) !== undefined) return "zstd:chunked";
  return c;
}

export function copyImage(
  source: Endpoint,
  destination: Endpoint,
  tag: string | undefined,
  opts: CopyOptions = {},
): Promise<CopyReport> {
  return destination.withWrites(() => copyUnderLease(source, destination, tag, opts));
}

/** Blobs copied at once per image (a registry endpoint limits its connections too). */
const BLOB_CONCURRENCY = 4;

async function copyUnderLease(
  source: Endpoint,
  destination: Endpoint,
  tag: string | undefined,
  opts: CopyOptions,
): Promise<CopyReport> {
  const progress = opts.progress ?? silentProgress;
  const report: CopyReport = {
    source: source.name,
    destination: destination.name,
    digest: "sha256:" as Digest,
    mediaType: "",
    blobs: [],
    bytesSent: 0,
    bytesSkipped: 0,
    bytesMounted: 0,
  };
  const record = (b: BlobReport) => {
    report.blobs.push(b);
    if (b.action === "exists") report.bytesSkipped += b.size;
    else if (b.action === "mounted") report.bytesMounted += b.size;
    else report.bytesSent += b.size;
  };

  const blob = async (desc: { digest: Digest; size: number }, label: string) => {
    const id = `${label} ${desc.digest}`;
    progress({
      type: "start",
      id,
      label: `${label} ${desc.digest.slice(7, 19)}`,
      total: desc.size,
      unit: "bytes",
    });
    // The transfer's own byte counts advance this task; its start/done would draw a second line.
    const advance: ProgressSink = (e) => {
      if (e.type === "advance") progress({ ...e, id });
    };
    const action = await destination.putFrom(source, desc, advance);
    progress({ type: "done", id, summary: action });
    record({ digest: desc.digest, size: desc.size, action });
  };

  const reencode = async (
    layer: Descriptor,
    diffId: Digest,
    compression: Compression,
  ): Promise<Descriptor> => {
    const id = `re-encode ${layer.digest}`;
    progress({ type: "start", id, label: `${compression} ${layer.digest.slice(7, 19)}`, unit: "bytes" });
    // Loaded only to re-encode (zstd binding, frame workers): a plain copy skips ~30 ms.
    const { decodeLayer, encodeLayer } = await import("../compress/layer.js");
    const tar = decodeLayer(await source.open(layer), layer, diffId);
    const { blob: out, result } = encodeLayer(tar, {
      compression,
      ...(opts.fast ? { fast: true } : {}),
    });
    result.catch(() => {});
    const put = await destination.put(out);
    const encoded = await result;
    if (encoded.diffId !== diffId) {
      throw new RootstockError(
        "INTERNAL",
        `layer ${layer.digest}: re-encoded tar hashes to ${encoded.diffId}, not ${diffId}`,
      );
    }
    progress({ type: "done", id, summary: `${encoded.size} bytes` });
    record({ digest: put.digest, size: put.size, action: "re-encoded", from: layer.digest });
    return {
      mediaType: encoded.mediaType,
      digest: encoded.digest,
      size: encoded.size,
      ...(Object.keys(encoded.annotations).length > 0 ? { annotations: encoded.annotations } : {}),
    };
  };

  /** Copies one image manifest's blobs; returns the descriptor and bytes to store for it. */
  const copyManifest = async (desc: Descriptor): Promise<{ descriptor: Descriptor; bytes: Uint8Array }> => {
    const image = await readImage(source, desc);
    const { manifest, config } = image;
    const wanted = opts.compression;
    const layers: Descriptor[] = [...manifest.layers];
    // Blobs copied as they are go in parallel (as skopeo's do); re-encodes, which
    // use every core already, one after another alongside them.
    const copies: (() => Promise<void>)[] = [() => blob(manifest.config, "config")];
    const reencodes: number[] = [];
    for (const [i, layer] of manifest.layers.entries()) {
      if (wanted && layerFormat(layer) !== wanted && !isNondistributable(layer.mediaType)) reencodes.push(i);
      else copies.push(() => blob(layer, "layer"));
    }
    const results = await Promise.allSettled([
      forEachLimit(copies, BLOB_CONCURRENCY, (copy) => copy()),
      forEachLimit(reencodes, 1, async (i) => {
        layers[i] = await reencode(manifest.layers[i]!, config.rootfs.diff_ids[i]!, wanted!);
      }),
    ]);
    for (const r of results) if (r.status === "rejected") throw r.reason;
    const changed = reencodes.length > 0;
    if (!changed) return { descriptor: desc, bytes: await source.read(desc) };
    // zstd layers need an OCI manifest; Docker configs are the same JSON under another name.
    const next: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { ...manifest.config, mediaType: MediaType.OciConfig },
      layers,
      ...(manifest.annotations ? { annotations: manifest.annotations } : {}),
    };
    const doc = serialiseManifest(next);
    return {
      descriptor: { ...doc.descriptor, ...(desc.platform ? { platform: desc.platform } : {}) },
      bytes: doc.bytes,
    };
  };

  let root = await source.resolveRoot();
  const rootDoc = parseImageDocument(await source.read(root), root.mediaType, `manifest ${root.digest}`);
  let result: { descriptor: Descriptor; bytes: Uint8Array };
  if (rootDoc.kind === "index" && opts.platform) {
    root = selectManifest(rootDoc.index, opts.platform, `index ${root.digest}`);
    result = await copyManifest(root);
  } else if (rootDoc.kind === "index") {
    const manifests: Descriptor[] = [];
    let changed = false;
    for (const child of rootDoc.index.manifests) {
      const copied = await copyManifest(child);
      if (copied.descriptor.digest !== child.digest) changed = true;
      if (!(await destination.has(copied.descriptor.digest))) {
        await destination.putManifest(copied.descriptor, copied.bytes);
      }
      manifests.push({ ...copied.descriptor, ...(child.platform ? { platform: child.platform } : {}) });
    }
    if (changed) {
      const doc = serialiseIndex({ ...rootDoc.index, mediaType: MediaType.OciIndex, manifests });
      result = { descriptor: doc.descriptor, bytes: doc.bytes };
    } else result = { descriptor: root, bytes: await source.read(root) };
  } else {
    result = await copyManifest(root);
  }
  await destination.putManifest(result.descriptor, result.bytes, tag);
  report.digest = result.descriptor.digest;
  report.mediaType = result.descriptor.mediaType;
  return report;
}
