/**
 * `rootstock import TARBALL store:REPO:TAG`: a root filesystem tarball becomes a
 * one-layer image. The tarball is read once to encode the layer (straight into the
 * destination, verified) and once more to take its tree digest and inventory.
 */
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { type Compression, encodeLayer } from "../compress/layer.js";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import type { Platform } from "../oci/platform.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { readFileChunks, readTar } from "../tar/index.js";
import { fromTar, treeDigest } from "../tree/index.js";
import { assembleImage, hostPlatform, reproducibleCreated, writeImage } from "./assemble.js";
import type { Endpoint } from "./endpoint.js";
import { summariseTree, type TreeInventory } from "./inventory.js";

export interface ImportOptions {
  compression?: Compression;
  /** zstd:chunked at the fast level. */
  fast?: boolean;
  platform?: Platform;
  progress?: ProgressSink;
}

export interface ImportSummary {
  reference: string;
  digest: Digest;
  layer: { digest: Digest; size: number; mediaType: string; diffId: Digest; uncompressedSize: number };
  /** The layer blob was already in the destination: nothing new was stored. */
  layerExisted: boolean;
  treeDigest: Digest;
  inventory: TreeInventory;
}

async function* counted(
  source: AsyncIterable<Uint8Array>,
  progress: ProgressSink,
  id: string,
): AsyncGenerator<Uint8Array> {
  let n = 0;
  for await (const chunk of source) {
    n += chunk.length;
    progress({ type: "advance", id, current: n });
    yield chunk;
  }
}

/** The tarball's size; a missing or unreadable path is a one-line error, not an internal one. */
async function tarballSize(path: string): Promise<number> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new RootstockError("NOT_FOUND", `tarball ${path}: no such file`);
    throw new RootstockError("INVALID_ARGUMENT", `tarball ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!st.isFile()) throw new RootstockError("INVALID_ARGUMENT", `tarball ${path}: not a regular file`);
  return st.size;
}

export function importTarball(
  tarPath: string,
  destination: Endpoint,
  tag: string,
  opts: ImportOptions = {},
): Promise<ImportSummary> {
  return destination.withWrites(() => importUnderLease(tarPath, destination, tag, opts));
}

async function importUnderLease(
  tarPath: string,
  destination: Endpoint,
  tag: string,
  opts: ImportOptions,
): Promise<ImportSummary> {
  const progress = opts.progress ?? silentProgress;
  const total = await tarballSize(tarPath);
  const compression = opts.compression ?? "zstd:chunked";

  progress({ type: "start", id: "encode", label: `encode ${compression}`, total, unit: "bytes" });
  const { blob, result } = encodeLayer(counted(readFileChunks(tarPath), progress, "encode"), {
    compression,
    ...(opts.fast ? { fast: true } : {}),
  });
  // A failure surfaces through the blob stream; keep the twin promise from going unhandled.
  result.catch(() => {});
  const put = await destination.put(blob);
  const layer = await result;
  progress({
    type: "done",
    id: "encode",
    summary: `${layer.size} bytes, ${put.existed ? "already stored" : "stored"}`,
  });

  progress({ type: "start", id: "digest", label: "tree digest", total, unit: "bytes" });
  const tree = await fromTar(readTar(counted(readFileChunks(tarPath), progress, "digest")));
  progress({ type: "done", id: "digest" });

  const created = reproducibleCreated();
  const image = assembleImage({
    platform: opts.platform ?? hostPlatform(),
    layers: [layer],
    ...(created ? { created } : {}),
    history: [{ ...(created ? { created } : {}), created_by: `rootstock import ${basename(tarPath)}` }],
  });
  await writeImage(destination, image, tag);
  return {
    reference: destination.name,
    digest: image.manifest.descriptor.digest,
    layer: {
      digest: layer.digest,
      size: layer.size,
      mediaType: layer.mediaType,
      diffId: layer.diffId,
      uncompressedSize: layer.uncompressedSize,
    },
    layerExisted: put.existed,
    treeDigest: treeDigest(tree),
    inventory: summariseTree(tree),
  };
}
