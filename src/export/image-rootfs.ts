/**
 * Image → merged root filesystem: the manifest's layers applied in order (OCI
 * whiteouts and opaque directories, the tree module's LayerApplier), each layer read
 * the cheapest way that still knows every file's sha256:
 *
 *   record  a LayerRecord in the store (src/layers: partial pull, explode): entries
 *           in TOC form, contents already file objects. No blob read at all.
 *   toc     a zstd:chunked blob: its TOC (one range read, checked against the
 *           manifest's TOC digest annotation). Contents stay in the blob until asked for.
 *   blob    any other blob: decoded once, verified against its digest and diff_id,
 *           hashing files as they pass.
 *
 * Contents are always served as cas file objects. When an export needs contents a
 * layer still holds in its blob (`storeBlobContent` at load, `ensureContent`
 * later), the layer is exploded into the store once (src/layers `explodeLayer`:
 * file objects + tar-split + LayerRecord): every later export or digest of any image
 * with that layer then reads the record and no blob at all, and gc keeps the file
 * objects as long as an image references the layer.
 *
 * The blob and TOC readers are imported when a layer needs them: the common case, a
 * layer with a record, loads neither.
 */
import { existsSync } from "node:fs";
import type { ContentStore } from "../cas/store.js";
import { parseChunkedAnnotations } from "../compress/footer.js";
import { RootstockError } from "../errors.js";
import type { Endpoint } from "../image/endpoint.js";
import { layerEntries, layerEntryOf } from "../layers/entries.js";
import { readLayerRecord } from "../layers/store.js";
import { type ResolvedImage, readImage } from "../layout/image.js";
import { type Digest, Digester, EMPTY_SHA256 } from "../oci/digest.js";
import type { Platform } from "../oci/platform.js";
import type { Descriptor } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { LayerApplier, type LayerEntry, Tree, treeDigest } from "../tree/index.js";
import { type CachedEntries, readCachedEntries, treeOfCached, writeCachedTree } from "./tree-cache.js";

export type LayerSourceKind = "record" | "toc" | "blob";

export interface LayerInfo {
  descriptor: Descriptor;
  diffId: Digest;
  /** How the entries were read. */
  via: LayerSourceKind;
  /** Exploded into the store by this load (now has a record). */
  exploded: boolean;
  /** Digests of the layer's regular files with content. */
  files: Set<Digest>;
}

export interface ImageRootfs {
  image: ResolvedImage;
  /** The merged tree; every file node has its digest. */
  tree: Tree;
  /** The tree digest of `tree` as loaded, when known (every layer recorded). */
  treeDigest?: Digest;
  /** Whether the tree was read from the store's cache of this image (tree-cache.ts). */
  fromCache: boolean;
  /**
   * Keeps `tree` in the store's cache once every layer has a record (call it after
   * `ensureContent`, which may have exploded the rest, and before changing `tree`).
   * Sets `treeDigest` on the way.
   */
  keepTree(): Promise<void>;
  layers: LayerInfo[];
  /**
   * Makes every digest in `wanted` a file object in the store, exploding only the
   * layers that hold missing ones. Returns the number of layers exploded.
   */
  ensureContent(wanted: Iterable<Digest>): Promise<number>;
}

export interface LoadImageOptions {
  platform?: Platform;
  /**
   * Layers with neither a record nor a usable TOC must be decoded to learn their
   * entries anyway: with `true` they are exploded into the store on that same pass
   * (exports need their contents); otherwise only hashed (digest).
   */
  storeBlobContent?: boolean;
  progress?: ProgressSink;
  /** The image's cached tree, already read (`readCachedRootfs`): neither is read again. */
  cached?: CachedRootfs;
}

function fileDigests(entries: LayerEntry[]): Set<Digest> {
  const out = new Set<Digest>();
  for (const e of entries)
    if (e.kind === "node" && e.node.type === "file" && e.node.size > 0) out.add(e.node.digest!);
  return out;
}

/** The layer's tar, decoded from its blob; digest and diff_id are checked when it ends. */
async function* layerTar(
  source: Endpoint,
  descriptor: Descriptor,
  diffId: Digest,
): AsyncGenerator<Uint8Array> {
  const { decodeLayer } = await import("../compress/layer.js");
  const blob = await source.open({ digest: descriptor.digest, size: descriptor.size });
  yield* decodeLayer(blob, descriptor, diffId);
}

/** Explodes a layer into the store (file objects + tar-split + record); returns its entries. */
async function explode(
  source: Endpoint,
  store: ContentStore,
  descriptor: Descriptor,
  diffId: Digest,
  progress: ProgressSink,
): Promise<LayerEntry[]> {
  const id = `explode-${descriptor.digest}`;
  progress({ type: "start", id, label: `unpack layer ${descriptor.digest.slice(7, 19)}`, unit: "bytes" });
  const { explodeLayer } = await import("../layers/explode.js");
  const { record } = await explodeLayer(
    store,
    layerTar(source, descriptor, diffId),
    {
      digest: descriptor.digest,
      size: descriptor.size,
      mediaType: descriptor.mediaType,
      ...(descriptor.annotations ? { annotations: descriptor.annotations } : {}),
    },
    diffId,
    { onBytes: (n) => progress({ type: "advance", id, current: n }) },
  );
  progress({ type: "done", id });
  return layerEntries(record);
}

/** An image whose merged tree the store keeps (tree-cache.ts), as the cache's sorted entries. */
export interface CachedRootfs extends CachedEntries {
  image: ResolvedImage;
  layers: LayerInfo[];
}

function recordedLayers(image: ResolvedImage): LayerInfo[] {
  const diffIds = image.config.rootfs.diff_ids as Digest[];
  return image.manifest.layers.map((descriptor, i) => ({
    descriptor,
    diffId: diffIds[i]!,
    via: "record",
    exploded: false,
    files: new Set(),
  }));
}

/**
 * The image's cached merged tree without building a Tree (the hardlink checkout
 * writes the entries as they are), or undefined when the store keeps none.
 */
export async function readCachedRootfs(
  source: Endpoint,
  store: ContentStore,
  platform?: Platform,
): Promise<CachedRootfs | undefined> {
  return cachedRootfsOf(await readImage(source, await source.resolveRoot(), platform), store);
}

async function cachedRootfsOf(image: ResolvedImage, store: ContentStore): Promise<CachedRootfs | undefined> {
  // Every layer recorded: its file objects are in the store, and the merged tree may be cached.
  if (!image.manifest.layers.every((d) => existsSync(store.metaPath(d.digest)))) return undefined;
  const cached = await readCachedEntries(store, image.descriptor.digest);
  return cached && { image, ...cached, layers: recordedLayers(image) };
}

export async function loadImageRootfs(
  source: Endpoint,
  store: ContentStore,
  opts: LoadImageOptions = {},
): Promise<ImageRootfs> {
  const progress = opts.progress ?? silentProgress;
  const image = opts.cached?.image ?? (await readImage(source, await source.resolveRoot(), opts.platform));
  const diffIds = image.config.rootfs.diff_ids as Digest[];
  const manifest = image.descriptor.digest;
  const cached = opts.cached ?? (await cachedRootfsOf(image, store));
  if (cached) {
    return {
      image,
      tree: treeOfCached(cached, manifest),
      treeDigest: cached.treeDigest,
      fromCache: true,
      keepTree: async () => {},
      layers: cached.layers,
      // Records keep their file objects: nothing to unpack. One the store lost is
      // found by the reader that opens it (STORE_CORRUPT), not by 7,500 stats up front.
      ensureContent: async () => 0,
    };
  }
  const tree = new Tree();
  const layers: LayerInfo[] = [];
  for (const [i, descriptor] of image.manifest.layers.entries()) {
    const diffId = diffIds[i]!;
    let entries: LayerEntry[] | undefined;
    let via: LayerSourceKind = "record";
    let exploded = false;
    const record = await readLayerRecord(store, descriptor.digest);
    if (record) {
      entries = layerEntries(record);
    } else if (parseChunkedAnnotations(descriptor.annotations)) {
      const { readChunkedMetadata } = await import("../compress/chunked-reader.js");
      const meta = await readChunkedMetadata(
        (start, end) => source.readRange(descriptor.digest, start, end),
        descriptor,
      );
      if (meta && !meta.fullPullReason) {
        entries = meta.toc.entries.filter((e) => e.type !== "chunk").map(layerEntryOf);
        via = "toc";
      }
    }
    if (!entries) {
      via = "blob";
      if (opts.storeBlobContent) {
        entries = await explode(source, store, descriptor, diffId, progress);
        exploded = true;
      } else {
        entries = await hashedEntries(layerTar(source, descriptor, diffId), `layer ${descriptor.digest}`);
      }
    }
    const applier = new LayerApplier(tree);
    for (const entry of entries) applier.add(entry);
    layers.push({ descriptor, diffId, via, exploded, files: fileDigests(entries) });
  }

  const ensureContent = async (wanted: Iterable<Digest>): Promise<number> => {
    const missing = new Set<Digest>();
    for (const d of wanted) if (d !== EMPTY_SHA256 && !existsSync(store.filePath(d))) missing.add(d);
    let count = 0;
    // Upper layers first: a file present in several layers comes from the one that wins.
    for (const layer of [...layers].reverse()) {
      if (missing.size === 0) break;
      if (![...layer.files].some((d) => missing.has(d))) continue;
      if (layer.via === "record" || layer.exploded) {
        const d = [...layer.files].find((x) => missing.has(x));
        throw new RootstockError(
          "STORE_CORRUPT",
          `layer ${layer.descriptor.digest}: file object ${d} of its record is missing (run fsck)`,
        );
      }
      await explode(source, store, layer.descriptor, layer.diffId, progress);
      layer.exploded = true;
      count++;
      for (const d of layer.files) missing.delete(d);
    }
    if (missing.size > 0)
      throw new RootstockError("INTERNAL", `no layer holds file content ${[...missing][0]}`);
    return count;
  };
  const rootfs: ImageRootfs = {
    image,
    tree,
    fromCache: false,
    layers,
    ensureContent,
    async keepTree() {
      if (!layers.every((l) => l.via === "record" || l.exploded)) return;
      rootfs.treeDigest ??= treeDigest(tree);
      await writeCachedTree(store, manifest, tree, rootfs.treeDigest).catch((err: NodeJS.ErrnoException) => {
        // Only a cache: a store that cannot take it (read-only, full) still exports.
        if (!["EROFS", "EACCES", "EPERM", "ENOSPC", "EDQUOT"].includes(err.code ?? "")) throw err;
      });
    },
  };
  return rootfs;
}

/** Layer entries of a tar stream, files hashed as they pass (nothing stored). */
export async function hashedEntries(tar: AsyncIterable<Uint8Array>, what: string): Promise<LayerEntry[]> {
  const [{ readTar }, { tocEntryFromHeader }] = await Promise.all([
    import("../tar/index.js"),
    import("../compress/toc.js"),
  ]);
  const out: LayerEntry[] = [];
  for await (const { header, payload } of readTar(tar)) {
    if (header.nameRaw || header.linknameRaw) {
      throw new RootstockError(
        "INVALID_FORMAT",
        `${what}: entry ${JSON.stringify(header.name)}: name or link target is not valid UTF-8`,
      );
    }
    const toc = tocEntryFromHeader(header);
    const d = new Digester();
    for await (const chunk of payload) d.update(chunk);
    if (header.type === "file") {
      if (d.size !== header.size) {
        throw new RootstockError("SIZE_MISMATCH", `${what}: entry ${JSON.stringify(header.name)} is short`);
      }
      toc.digest = d.digest();
    }
    out.push(layerEntryOf(toc));
  }
  return out;
}
