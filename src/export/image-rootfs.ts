/**
 * Image → merged root filesystem: the manifest's layers applied in order (OCI
 * whiteouts and opaque directories, the tree module's LayerApplier), each layer read
 * the cheapest way that still knows every file's sha256:
 *
 *   record  a LayerRecord in the store (partial pull, explode): entries in TOC form,
 *           contents already file objects. No blob read at all.
 *   toc     a zstd:chunked blob: its TOC (one range read, checked against the
 *           manifest's TOC digest annotation). Contents stay in the blob until asked for.
 *   blob    any other blob: decoded once, verified against its digest and diff_id,
 *           hashing files as they pass (and storing them as file objects when asked).
 *
 * Contents are always served as cas file objects: `ensureContent(digests)` decodes
 * the layers that hold missing ones (only those) and puts the files into the store.
 * File objects made that way are not referenced by any ref (gc may drop them; a
 * later export decodes again): pull/explode (src/layers) is what keeps them for good.
 */
import { existsSync } from "node:fs";
import type { ContentStore } from "../cas/store.js";
import { readChunkedMetadata } from "../compress/chunked-reader.js";
import { parseChunkedAnnotations } from "../compress/footer.js";
import { decodeLayer } from "../compress/layer.js";
import { type TocEntry, tocEntryFromHeader } from "../compress/toc.js";
import { RootstockError } from "../errors.js";
import type { Endpoint } from "../image/endpoint.js";
import type { LayerRecord } from "../layers/record.js";
import { type ResolvedImage, readImage } from "../layout/image.js";
import { type Digest, Digester, EMPTY_SHA256 } from "../oci/digest.js";
import type { Platform } from "../oci/platform.js";
import type { Descriptor } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { readTar } from "../tar/index.js";
import { LayerApplier, type LayerEntry, Tree } from "../tree/index.js";
import { layerEntriesFromToc } from "./toc-entries.js";

export type LayerSourceKind = "record" | "toc" | "blob";

export interface LayerInfo {
  descriptor: Descriptor;
  diffId: Digest;
  via: LayerSourceKind;
  /** Digests of the layer's regular files with content. */
  files: Set<Digest>;
}

export interface ImageRootfs {
  image: ResolvedImage;
  /** The merged tree; every file node has its digest. */
  tree: Tree;
  layers: LayerInfo[];
  /**
   * Makes every digest in `wanted` a file object in the store, decoding only the
   * layers that hold missing ones. Returns how many objects were added.
   */
  ensureContent(wanted: Iterable<Digest>): Promise<number>;
}

export interface LoadImageOptions {
  platform?: Platform;
  /**
   * Blob layers without a TOC are decoded anyway to learn their entries: with `true`
   * their files are stored as file objects on the same pass (exports need them).
   */
  storeBlobContent?: boolean;
  progress?: ProgressSink;
}

const RECORD_VERSION = 1;

/** The LayerRecord the store holds for a layer blob, if any (partial pull or explode). */
async function findRecord(store: ContentStore, digest: Digest): Promise<LayerRecord | undefined> {
  const doc = await store.getMeta<LayerRecord>(digest).catch(() => undefined);
  if (!doc?.standsInForBlob) return undefined;
  const data = doc.data;
  if (data?.version !== RECORD_VERSION || !Array.isArray(data.entries)) return undefined;
  return data;
}

function fileDigests(entries: LayerEntry[]): Set<Digest> {
  const out = new Set<Digest>();
  for (const e of entries)
    if (e.kind === "node" && e.node.type === "file" && e.node.size > 0) out.add(e.node.digest!);
  return out;
}

export async function loadImageRootfs(
  source: Endpoint,
  store: ContentStore,
  opts: LoadImageOptions = {},
): Promise<ImageRootfs> {
  const progress = opts.progress ?? silentProgress;
  const image = await readImage(source, await source.resolveRoot(), opts.platform);
  const tree = new Tree();
  const layers: LayerInfo[] = [];
  const diffIds = image.config.rootfs.diff_ids as Digest[];
  for (const [i, descriptor] of image.manifest.layers.entries()) {
    const diffId = diffIds[i]!;
    const what = `layer ${descriptor.digest}`;
    let entries: LayerEntry[] | undefined;
    let via: LayerSourceKind = "record";
    const record = await findRecord(store, descriptor.digest);
    if (record) {
      entries = layerEntriesFromToc(record.entries, what);
    } else if (parseChunkedAnnotations(descriptor.annotations)) {
      const meta = await readChunkedMetadata(
        (start, end) => source.readRange(descriptor.digest, start, end),
        descriptor,
      );
      if (meta && !meta.fullPullReason) {
        entries = layerEntriesFromToc(meta.toc.entries, what);
        via = "toc";
      }
    }
    if (!entries) {
      via = "blob";
      progress({
        type: "start",
        id: `read-${descriptor.digest}`,
        label: `read ${what}`,
        total: descriptor.size,
        unit: "bytes",
      });
      entries = await entriesFromBlob(source, store, descriptor, diffId, opts.storeBlobContent ?? false);
      progress({ type: "done", id: `read-${descriptor.digest}` });
    }
    const applier = new LayerApplier(tree);
    for (const entry of entries) applier.add(entry);
    layers.push({ descriptor, diffId, via, files: fileDigests(entries) });
  }

  const ensureContent = async (wanted: Iterable<Digest>): Promise<number> => {
    const missing = new Set<Digest>();
    for (const d of wanted) if (d !== EMPTY_SHA256 && !existsSync(store.filePath(d))) missing.add(d);
    if (missing.size === 0) return 0;
    let added = 0;
    // Upper layers first: a file present in several layers is fetched from the one that wins.
    for (const layer of [...layers].reverse()) {
      const here = [...layer.files].filter((d) => missing.has(d));
      if (here.length === 0) continue;
      if (layer.via === "record") {
        throw new RootstockError(
          "STORE_CORRUPT",
          `layer ${layer.descriptor.digest}: file object ${here[0]} of its record is missing (run fsck)`,
        );
      }
      const label = `unpack layer ${layer.descriptor.digest}`;
      progress({ type: "start", id: label, label, total: layer.descriptor.size, unit: "bytes" });
      added += await storeLayerFiles(source, store, layer, new Set(here));
      progress({ type: "done", id: label });
      for (const d of here) missing.delete(d);
      if (missing.size === 0) break;
    }
    if (missing.size > 0) {
      throw new RootstockError("INTERNAL", `no layer holds file content ${[...missing][0]}`);
    }
    await store.flush();
    return added;
  };
  return { image, tree, layers, ensureContent };
}

/** The layer's tar entries, decoded from its blob and verified (digest, diff_id) at the end. */
async function* layerTar(source: Endpoint, descriptor: Descriptor, diffId: Digest) {
  const blob = await source.open({ digest: descriptor.digest, size: descriptor.size });
  yield* readTar(decodeLayer(blob, descriptor, diffId));
}

async function drain(payload: AsyncIterable<Uint8Array>): Promise<Digester> {
  const d = new Digester();
  for await (const chunk of payload) d.update(chunk);
  return d;
}

/** Entries of a blob layer without a usable TOC: one pass, files hashed (and stored when asked). */
async function entriesFromBlob(
  source: Endpoint,
  store: ContentStore,
  descriptor: Descriptor,
  diffId: Digest,
  storeContent: boolean,
): Promise<LayerEntry[]> {
  const toc: TocEntry[] = [];
  const run = async () => {
    for await (const { header, payload } of layerTar(source, descriptor, diffId)) {
      if (header.nameRaw || header.linknameRaw) {
        throw new RootstockError(
          "INVALID_FORMAT",
          `layer ${descriptor.digest}: entry ${JSON.stringify(header.name)}: name or link target is not valid UTF-8`,
        );
      }
      const entry = tocEntryFromHeader(header);
      if (header.type === "file" && header.size > 0) {
        if (storeContent) {
          const put = await store.files.put(payload, { size: header.size });
          entry.digest = put.digest;
        } else {
          const d = await drain(payload);
          if (d.size !== header.size) {
            throw new RootstockError(
              "SIZE_MISMATCH",
              `layer ${descriptor.digest}: entry ${JSON.stringify(header.name)} is short`,
            );
          }
          entry.digest = d.digest();
        }
      } else {
        await drain(payload);
      }
      toc.push(entry);
    }
  };
  if (storeContent) await store.withLease(run);
  else await run();
  if (storeContent) await store.flush();
  return layerEntriesFromToc(toc, `layer ${descriptor.digest}`);
}

/** Decodes a layer and stores the files whose digests are in `wanted` as file objects. */
async function storeLayerFiles(
  source: Endpoint,
  store: ContentStore,
  layer: LayerInfo,
  wanted: Set<Digest>,
): Promise<number> {
  let added = 0;
  await store.withLease(async () => {
    for await (const { header, payload } of layerTar(source, layer.descriptor, layer.diffId)) {
      if (header.type !== "file" || header.size === 0) {
        await drain(payload);
        continue;
      }
      // Hashing first would read twice: put verifies and names the object, keep it if wanted.
      const put = await store.files.put(payload, { size: header.size });
      if (wanted.delete(put.digest) && !put.existed) added++;
    }
  });
  return added;
}
