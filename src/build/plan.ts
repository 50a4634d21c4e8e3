/**
 * `rootstock plan` as a pure function: the graph, the hashes of the files it reads
 * and what the destination holds in, for each image its tag, whether it exists, and
 * if it must be built, why (which inputs changed since the last recorded build).
 */
import type { Graph } from "./graph.js";
import {
  type Channel,
  channelTag,
  computeTags,
  type FileHashes,
  type InputRecord,
  LAYER_FORMAT_VERSION,
} from "./tags.js";

/**
 * What the destination registry (or layout) holds, read by the caller:
 * the tags present in each repository, and the input record of the last build of
 * each repository (the `dev.rootstock.inputs` label of the image its `latest`
 * pointer names, see README), if any.
 */
export interface DestinationState {
  tags: Record<string, readonly string[]>;
  lastBuild: Record<string, InputRecord | undefined>;
}

export type PlanAction =
  /** The tag exists in the channel asked for (or post-merge): nothing to do. */
  | "keep"
  /** Post-merge run, `pre-TAG` exists: PUT its manifest as `TAG`, no blob moves. */
  | "promote"
  /** Neither tag exists: build. */
  | "build";

export interface PlannedImage {
  id: string;
  name: string;
  arch: string;
  repository: string;
  /** The post-merge tag; the pre-merge one is `pre-` + tag. */
  tag: string;
  /** The tag this run pushes or promotes to. */
  targetTag: string;
  /** The tag this run needs is already at the destination. */
  exists: boolean;
  action: PlanAction;
  /** Why it must be built; empty unless action is "build". */
  reasons: string[];
  parent?: string;
  record: InputRecord;
}

export interface Plan {
  channel: Channel;
  images: PlannedImage[];
  /** Things that weaken the tag's meaning (unpinned external bases). */
  warnings: string[];
}

/** The wording of one changed input, from its record key. */
function describeInput(
  key: string,
  change: "changed" | "added" | "removed",
  before?: string,
  after?: string,
) {
  const [kind, ...rest] = key.split(":");
  const name = rest.join(":");
  const verb = change === "changed" ? "changed" : change === "added" ? "added" : "no longer used";
  switch (kind) {
    case "layer-format":
      return `rootstock layer format changed (${before ?? "?"} → ${after ?? LAYER_FORMAT_VERSION})`;
    case "parent":
      return change === "changed" ? `parent ${name} changed` : `parent ${name} ${verb}`;
    case "base":
      return `base image ${name} ${verb}`;
    case "field":
      return `field ${name} ${verb}`;
    case "package-list":
      return `package list "${name}" ${verb}`;
    case "file":
      return `file ${name} ${verb}`;
    default:
      return `input ${key} ${verb}`;
  }
}

/** The changed inputs between two records, in a stable order (the new record's key order first). */
export function diffRecords(before: InputRecord, after: InputRecord): string[] {
  const reasons: string[] = [];
  for (const [key, value] of Object.entries(after.inputs)) {
    const old = before.inputs[key];
    if (old === undefined) reasons.push(describeInput(key, "added"));
    else if (old !== value) reasons.push(describeInput(key, "changed", old, value));
  }
  for (const key of Object.keys(before.inputs)) {
    if (!(key in after.inputs)) reasons.push(describeInput(key, "removed"));
  }
  return reasons;
}

export function plan(
  graph: Graph,
  files: FileHashes,
  destination: DestinationState,
  options: { channel: Channel } = { channel: "pre-merge" },
): Plan {
  const tags = computeTags(graph, files);
  const images: PlannedImage[] = [];
  const warnings: string[] = [];
  for (const id of graph.order) {
    const node = graph.images.get(id)!;
    const { tag, record } = tags.get(id)!;
    const present = new Set(destination.tags[node.repository] ?? []);
    const post = present.has(tag);
    const pre = present.has(channelTag(tag, "pre-merge"));
    let action: PlanAction;
    if (post || (pre && options.channel === "pre-merge")) action = "keep";
    else if (pre) action = "promote";
    else action = "build";

    let reasons: string[] = [];
    if (action === "build") {
      const last = destination.lastBuild[node.repository];
      if (!last) reasons = ["no earlier build recorded at the destination"];
      else {
        reasons = diffRecords(last, record);
        if (reasons.length === 0) reasons = ["tag missing at the destination although no input changed"];
      }
    }
    if (node.base.kind === "import" && node.base.source.transport === "docker" && !node.base.source.pinned) {
      warnings.push(
        `${id}: base ${node.base.source.reference} is not pinned by digest: a change upstream will not change the tag`,
      );
    }
    images.push({
      id,
      name: node.name,
      arch: node.arch.name,
      repository: node.repository,
      tag,
      targetTag: channelTag(tag, options.channel),
      exists: action === "keep",
      action,
      reasons,
      ...(node.parent ? { parent: node.parent } : {}),
      record,
    });
  }
  return { channel: options.channel, images, warnings };
}

/** The plan as stable JSON for `rootstock plan --json` (records left out: they are labels). */
export function planToJson(p: Plan): string {
  return JSON.stringify(
    {
      channel: p.channel,
      images: p.images.map(({ record: _record, ...rest }) => rest),
      warnings: p.warnings,
    },
    null,
    2,
  );
}

/** One line per image, for the terminal. */
export function formatPlan(p: Plan): string {
  const width = Math.max(...p.images.map((i) => i.id.length));
  const lines = p.images.map((i) => {
    const head = `${i.id.padEnd(width)}  ${i.repository}:${i.targetTag}  ${i.action}`;
    return i.reasons.length ? `${head}: ${i.reasons.join("; ")}` : head;
  });
  return [...lines, ...p.warnings.map((w) => `warning: ${w}`)].join("\n");
}
