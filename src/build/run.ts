/**
 * `rootstock build`: does what plan says, in graph order. Per image to build:
 * producer → root filesystem directory (base: mmdebstrap or import; child: a copy
 * of the parent's) → script step → reproducibility cleanup → scan (times clamped to
 * SOURCE_DATE_EPOCH) → diff against the parent's tree (or empty) → reproducible
 * tar → zstd:chunked → destination; then config (parent's diff_ids + this one,
 * provenance labels), manifest, tag. Parents' directories stay in a work directory
 * under the store for their children in the same run and are removed (mount-safe)
 * when no child needs them, and at the end whatever happens.
 */
import { mkdir, mkdtemp, rename } from "node:fs/promises";
import { join } from "node:path";
import { encodeLayer } from "../compress/layer.js";
import { RootstockError } from "../errors.js";
import { assembleImage, writeImage } from "../image/assemble.js";
import { openEndpoint } from "../image/endpoint.js";
import type { Digest } from "../oci/digest.js";
import { isIndexMediaType } from "../oci/mediatypes.js";
import { selectManifest } from "../oci/platform.js";
import { parseReference } from "../oci/reference.js";
import type { Descriptor, History } from "../oci/types.js";
import { parseIndex } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { diff, directoryContent, scan, type Tree, treeAsLayer, writeLayer } from "../tree/index.js";
import { type Destination, LATEST_TAG, planBuild, readImage } from "./destination.js";
import type { Graph, ImageNode } from "./graph.js";
import type { Plan, PlannedImage } from "./plan.js";
import { type ImageUnpacker, produceImport } from "./producers/import.js";
import { produceMmdebstrap } from "./producers/mmdebstrap.js";
import { removeTree } from "./producers/mounts.js";
import { produceScript } from "./producers/script.js";
import { clampTreeTimes, copyRootfs, makeReproducible, unpackImage } from "./rootfs.js";

export { planBuild } from "./destination.js";

import { type Channel, channelTag, formatInputRecord, INPUTS_LABEL } from "./tags.js";

/** The config label naming the parent image's manifest digest. */
export const PARENT_LABEL = "dev.rootstock.parent";
/** The config label naming the rootstock version that built the image. */
export const VERSION_LABEL = "dev.rootstock.version";
/**
 * SOURCE_DATE_EPOCH when neither the caller nor the environment gives one
 * (2024-01-01T00:00:00Z): a constant, so the same inputs give the same layers on
 * any day. Not an input of the tag (README), so it must not vary by default.
 */
export const DEFAULT_SOURCE_DATE_EPOCH = 1_704_067_200;

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface BuildOptions {
  graph: Graph;
  /** Directory of images.yaml. */
  baseDir: string;
  destination: Destination;
  channel: Channel;
  /** Node ids to build (their ancestors that are missing come along); default: all. */
  select?: string[];
  /** `--expect-tag`: the (post-merge) tag each selected image must have, else the inputs changed since planning. */
  expectTag?: string;
  /** The work directory's parent (`STORE/work`); removed entries only. */
  workRoot: string;
  /** A .deb cache shared by builds (not an input); undefined: none. */
  debCache?: string;
  sourceDateEpoch?: number;
  /** Recorded in the `dev.rootstock.version` label. */
  version: string;
  progress?: ProgressSink;
  signal?: AbortSignal;
}

export interface BuiltImage {
  id: string;
  repository: string;
  tag: string;
  /** The tag this run wrote or found. */
  targetTag: string;
  action: PlannedImage["action"];
  reasons: string[];
  /** Manifest digest (built or promoted). */
  digest?: Digest;
  /** The image's own layer; absent when the image changes nothing over its parent. */
  layer?: { digest: Digest; diffId: Digest; size: number; uncompressedSize: number; existed: boolean };
  seconds?: number;
}

export interface BuildReport {
  plan: Plan;
  images: BuiltImage[];
}

/** What a child needs of its parent: the image (layers, history) and, on demand, its root filesystem. */
interface ParentState {
  repository: string;
  /** The tag under which the parent exists at the destination now. */
  tag: string;
  digest: Digest;
  layers: Descriptor[];
  diffIds: Digest[];
  history: History[];
  /** Directory and scanned (clamped) tree, once made. */
  rootfs?: { dir: string; tree: Tree };
  /** Children still to build from this directory; the last one may take it over. */
  pendingChildren: number;
}

/** The selected ids plus every ancestor the plan does not keep (a child needs its parent at the destination). */
export function buildSet(graph: Graph, p: Plan, select?: string[]): Set<string> {
  const byId = new Map(p.images.map((i) => [i.id, i]));
  const wanted = new Set<string>();
  for (const id of select ?? graph.order) {
    if (!graph.images.has(id)) {
      throw new RootstockError("INVALID_ARGUMENT", `unknown image ${id} (images: ${graph.order.join(", ")})`);
    }
    for (let cur: string | undefined = id; cur; cur = graph.images.get(cur)!.parent) {
      if (cur !== id && byId.get(cur)!.action === "keep") break;
      wanted.add(cur);
    }
  }
  return wanted;
}

export async function buildImages(opts: BuildOptions): Promise<BuildReport> {
  const progress = opts.progress ?? silentProgress;
  const epoch = opts.sourceDateEpoch ?? DEFAULT_SOURCE_DATE_EPOCH;
  const p = await planBuild(opts.graph, opts.baseDir, opts.destination, opts.channel);
  for (const w of p.warnings) progress({ type: "note", message: `warning: ${w}` });
  const set = buildSet(opts.graph, p, opts.select);
  if (opts.expectTag !== undefined) {
    for (const id of opts.select ?? []) {
      const planned = p.images.find((i) => i.id === id)!;
      if (planned.tag !== opts.expectTag) {
        throw new RootstockError(
          "INVALID_ARGUMENT",
          `${id}: tag is ${planned.tag}, expected ${opts.expectTag}: its inputs changed since the pipeline was planned`,
        );
      }
    }
  }
  await mkdir(opts.workRoot, { recursive: true });
  const work = await mkdtemp(join(opts.workRoot, "build-"));
  const parents = new Map<string, ParentState>();
  const images: BuiltImage[] = [];
  const planned = new Map(p.images.map((i) => [i.id, i]));
  // How many children each image has to build in this run.
  const pending = new Map<string, number>();
  for (const id of set) {
    const parent = opts.graph.images.get(id)!.parent;
    if (parent && planned.get(id)!.action === "build") pending.set(parent, (pending.get(parent) ?? 0) + 1);
  }
  try {
    for (const id of opts.graph.order) {
      if (!set.has(id)) continue;
      opts.signal?.throwIfAborted();
      const node = opts.graph.images.get(id)!;
      const image = planned.get(id)!;
      const started = Date.now();
      const result: BuiltImage = {
        id,
        repository: image.repository,
        tag: image.tag,
        targetTag: image.targetTag,
        action: image.action,
        reasons: image.reasons,
      };
      if (image.action === "keep") {
        result.targetTag = existingTag(p, image);
      } else if (image.action === "promote") {
        result.digest = await promoteInPlace(opts.destination, image, progress);
      } else {
        const built = await buildOne({ opts, plan: p, parents, pending }, node, image, work, epoch, progress);
        result.digest = built.digest;
        if (built.layer) result.layer = built.layer;
      }
      result.seconds = (Date.now() - started) / 1000;
      images.push(result);
    }
  } finally {
    await removeTree(work);
  }
  return { plan: p, images };
}

/** The tag under which a kept image exists: the post-merge one if present, else its pre-merge one. */
function existingTag(p: Plan, image: PlannedImage): string {
  return p.channel === "pre-merge" && image.exists && image.targetTag !== image.tag
    ? image.targetTag
    : image.tag;
}

async function promoteInPlace(
  dest: Destination,
  image: PlannedImage,
  progress: ProgressSink,
): Promise<Digest> {
  const { promote } = await import("./channels.js");
  const [r] = await promote([{ repository: image.repository, tag: image.tag }], dest, { progress });
  return r!.digest as Digest;
}

/** The parent's image and, unless built in this run, its root filesystem unpacked from the destination. */
async function parentState(
  run: RunState,
  node: ImageNode,
  work: string,
  epoch: number,
): Promise<ParentState> {
  const { opts, parents } = run;
  const parentId = node.parent!;
  let state = parents.get(parentId);
  if (!state) {
    // Built before this run: read it from the destination (post-merge tag, else pre-merge).
    const parent = opts.graph.images.get(parentId)!;
    const tags = await opts.destination.tags(parent.repository);
    const tag = run.plan.images.find((i) => i.id === parentId)!.tag;
    const present = [tag, channelTag(tag, "pre-merge")].find((t) => tags.includes(t));
    if (!present) {
      throw new RootstockError(
        "NOT_FOUND",
        `${node.id}: parent ${parentId} (${tag}) is not at ${opts.destination.text}`,
      );
    }
    const img = await readImage(opts.destination, parent.repository, present);
    state = {
      repository: parent.repository,
      tag: present,
      digest: img.descriptor.digest,
      layers: img.manifest.layers,
      diffIds: img.config.rootfs.diff_ids as Digest[],
      history: img.config.history ?? [],
      pendingChildren: run.pending.get(parentId) ?? 0,
    };
    parents.set(parentId, state);
  }
  if (!state.rootfs) {
    const dir = join(work, `${parentId.replace(/[^a-z0-9._-]/gi, "_")}.unpacked`);
    const endpoint = await opts.destination.open(state.repository, state.tag);
    try {
      await unpackImage(endpoint, await endpoint.resolveRoot(), dir, {
        progress: opts.progress ?? silentProgress,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } finally {
      await endpoint.close();
    }
    const { tree } = await scan(dir);
    clampTreeTimes(tree, epoch);
    state.rootfs = { dir, tree };
  }
  return state;
}

/** What the images of one run share. */
interface RunState {
  opts: BuildOptions;
  plan: Plan;
  parents: Map<string, ParentState>;
  /** Children each image has to build in this run. */
  pending: Map<string, number>;
}

async function buildOne(
  run: RunState,
  node: ImageNode,
  image: PlannedImage,
  work: string,
  epoch: number,
  progress: ProgressSink,
): Promise<{ digest: Digest; layer?: BuiltImage["layer"] }> {
  const { opts, parents } = run;
  const childrenToBuild = run.pending.get(node.id) ?? 0;
  const taskId = `build:${node.id}`;
  progress({ type: "start", id: taskId, label: `build ${node.id} → ${image.repository}:${image.targetTag}` });
  const rootfs = join(work, node.id.replace(/[^a-z0-9._-]/gi, "_"));
  const common = { progress, ...(opts.signal ? { signal: opts.signal } : {}) };
  let parent: ParentState | undefined;

  // 1. the starting root filesystem
  const base = node.base;
  if (base.kind === "mmdebstrap") {
    await produceMmdebstrap({
      options: base.options,
      baseDir: opts.baseDir,
      target: rootfs,
      sourceDateEpoch: epoch,
      ...(opts.debCache
        ? { debCache: join(opts.debCache, `${base.options.suite}-${base.options.architecture}`) }
        : {}),
      ...common,
    });
  } else if (base.kind === "parent") {
    parent = await parentState(run, node, work, epoch);
    parent.pendingChildren = Math.max(0, parent.pendingChildren - 1);
    if (parent.pendingChildren === 0) {
      // the last child takes the directory over: its tree is kept in memory for the diff
      await rename(parent.rootfs!.dir, rootfs);
    } else {
      await copyRootfs(parent.rootfs!.dir, rootfs, progress);
    }
  } else {
    await produceImport({
      source: base.source,
      baseDir: opts.baseDir,
      target: rootfs,
      unpack: externalUnpacker(opts, node),
      ...common,
    });
  }

  // 2. the script step, then what would differ between two runs
  if (node.script) {
    await produceScript({
      rootfs,
      step: node.script,
      baseDir: opts.baseDir,
      env: node.config.env,
      sourceDateEpoch: epoch,
      ...(opts.debCache && node.script.packages.length > 0
        ? {
            debCache: join(opts.debCache, `apt-${node.arch.debian}`),
            aptListsCache: join(opts.debCache, `apt-lists-${node.arch.debian}`),
          }
        : {}),
      ...common,
    });
  }
  await makeReproducible(rootfs, epoch);

  // 3. the layer: what changed over the parent's tree, times clamped as the layer keeps them
  const { tree } = await scan(rootfs, { hash: parent !== undefined, progress });
  clampTreeTimes(tree, epoch);
  const entries = parent ? diff(parent.rootfs!.tree, tree) : treeAsLayer(tree);
  const endpoint = await opts.destination.open(image.repository, image.targetTag);
  try {
    let layer: BuiltImage["layer"];
    let encoded: Awaited<ReturnType<typeof encodeLayer>["result"]> | undefined;
    if (entries.length > 0) {
      const { blob, result } = encodeLayer(
        writeLayer(entries, directoryContent(rootfs), { sourceDateEpoch: epoch }),
        { compression: "zstd:chunked" },
      );
      const put = await endpoint.put(blob);
      encoded = await result;
      layer = {
        digest: encoded.digest,
        diffId: encoded.diffId,
        size: encoded.size,
        uncompressedSize: encoded.uncompressedSize,
        existed: put.existed,
      };
    }

    // 4. the parent's layers must be in this repository too (a mount on a registry, nothing in the store)
    const parentLayers = parent?.layers ?? [];
    if (parent && parentLayers.length > 0) {
      const source = await opts.destination.open(parent.repository, parent.tag);
      try {
        for (const l of parentLayers)
          await endpoint.putFrom(source, { digest: l.digest, size: l.size }, progress);
      } finally {
        await source.close();
      }
    }

    // 5. config and manifest
    const created = new Date(epoch * 1000).toISOString().replace(/\.000Z$/, "Z");
    const env = { PATH: DEFAULT_PATH, ...node.config.env };
    const labels: Record<string, string> = {
      ...node.config.labels,
      [INPUTS_LABEL]: formatInputRecord(image.record),
      [VERSION_LABEL]: opts.version,
      ...(parent ? { [PARENT_LABEL]: parent.digest } : {}),
    };
    const history: History[] = [
      ...(parent?.history ?? []),
      {
        created,
        created_by: `rootstock build ${node.id}`,
        comment: describeBase(node),
        ...(encoded ? {} : { empty_layer: true }),
      },
    ];
    const assembled = assembleImage({
      platform: node.arch.oci,
      layers: [
        ...parentLayers.map((l, i) => ({
          mediaType: l.mediaType,
          digest: l.digest,
          size: l.size,
          diffId: parent!.diffIds[i]!,
          uncompressedSize: 0,
          annotations: l.annotations ?? {},
        })),
        ...(encoded ? [encoded] : []),
      ],
      config: {
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        ...(node.config.entrypoint ? { Entrypoint: node.config.entrypoint } : {}),
        ...(node.config.cmd ? { Cmd: node.config.cmd } : {}),
        ...(node.config.workdir ? { WorkingDir: node.config.workdir } : {}),
        Labels: labels,
      },
      history,
      created,
    });
    await writeImage(endpoint, assembled, image.targetTag);
    if (image.targetTag === image.tag) {
      await endpoint.putManifest(assembled.manifest.descriptor, assembled.manifest.bytes, LATEST_TAG);
    }
    const digest = assembled.manifest.descriptor.digest;

    // 6. keep the directory for children of this run, else drop it now (disk)
    if (childrenToBuild > 0) {
      parents.set(node.id, {
        repository: image.repository,
        tag: image.targetTag,
        digest,
        layers: assembled.manifest.manifest.layers,
        diffIds: assembled.config.config.rootfs.diff_ids as Digest[],
        history,
        rootfs: { dir: rootfs, tree },
        pendingChildren: childrenToBuild,
      });
    } else await removeTree(rootfs);
    if (parent && parent.pendingChildren === 0 && parent.rootfs) {
      await removeTree(parent.rootfs.dir);
      parent.rootfs = undefined;
    }
    progress({
      type: "done",
      id: taskId,
      summary: layer
        ? `${entries.length} entries, ${layer.size} bytes${layer.existed ? " (already stored)" : ""}`
        : "no change over the parent",
    });
    return { digest, ...(layer ? { layer } : {}) };
  } finally {
    await endpoint.close();
  }
}

function describeBase(node: ImageNode): string {
  const b = node.base;
  if (b.kind === "mmdebstrap") return `mmdebstrap ${b.options.suite} --variant=${b.options.variant}`;
  if (b.kind === "parent") return `from ${b.parent}`;
  return b.source.transport === "docker"
    ? `from ${b.source.reference}`
    : b.source.transport === "oci"
      ? `from oci:${b.source.path}:${b.source.ref}`
      : `from tarball ${b.source.path}`;
}

/** Registry and OCI layout bases: the image for this node's platform, unpacked. */
function externalUnpacker(opts: BuildOptions, node: ImageNode): ImageUnpacker {
  return async (source, target, { baseDir, progress, signal }) => {
    const { resolveInside } = await import("./inputs.js");
    const ref =
      source.transport === "docker"
        ? parseReference(`docker://${source.reference}`)
        : parseReference(`oci:${await resolveInside(baseDir, source.path, "from")}:${source.ref}`);
    const endpoint = await openEndpoint(ref, { storeDir: opts.workRoot });
    try {
      let root = await endpoint.resolveRoot();
      if (isIndexMediaType(root.mediaType)) {
        root = selectManifest(parseIndex(await endpoint.read(root)), node.arch.oci, endpoint.name);
      }
      // unpackImage creates the directory itself
      await removeTree(target);
      await unpackImage(endpoint, root, target, { progress, ...(signal ? { signal } : {}) });
    } finally {
      await endpoint.close();
    }
  };
}
