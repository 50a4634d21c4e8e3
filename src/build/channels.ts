/**
 * Channels at work: which channel a run builds for (from GitLab's CI variables),
 * promotion (the pre-merge manifest PUT again under the post-merge tag: no blob is
 * copied; a different source repository costs a cross-repository mount per blob),
 * and the shorter life of pre-merge tags in the local store (`store gc
 * --keep-pre-merge 14d`).
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { ContentStore } from "../cas/store.js";
import { RootstockError } from "../errors.js";
import type { Endpoint } from "../image/endpoint.js";
import { parseManifest } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { type Destination, LATEST_TAG } from "./destination.js";
import { type Channel, channelTag, parseChannelTag } from "./tags.js";

/**
 * post-merge on the default branch (`CI_COMMIT_BRANCH == CI_DEFAULT_BRANCH`, which
 * also holds outside CI where both are unset: a local build is final), pre-merge
 * everywhere else (merge requests, other branches, tags).
 */
export function defaultChannel(env: NodeJS.ProcessEnv = process.env): Channel {
  return env.CI_COMMIT_BRANCH === env.CI_DEFAULT_BRANCH ? "post-merge" : "pre-merge";
}

export interface PromoteResult {
  repository: string;
  tag: string;
  digest: string;
  /** What happened to the blobs: nothing moves in the same repository. */
  blobs: { exists: number; mounted: number; uploaded: number };
}

/**
 * Puts the manifest of `from` (an endpoint at the pre-merge tag) into `to` under
 * `tag`, and under `latest`. When `to` is another repository, its blobs are sent
 * first the cheapest way the endpoint knows (a mount on the same registry).
 */
export async function promoteManifest(
  from: Endpoint,
  to: Endpoint,
  tag: string,
  options: { sameRepository: boolean; progress?: ProgressSink },
): Promise<PromoteResult["blobs"] & { digest: string }> {
  const descriptor = await from.resolveRoot();
  const bytes = await from.read(descriptor);
  const counts = { exists: 0, mounted: 0, uploaded: 0 };
  if (!options.sameRepository) {
    const manifest = parseManifest(bytes, `${from.name} manifest`);
    for (const blob of [manifest.config, ...manifest.layers]) {
      counts[await to.putFrom(from, { digest: blob.digest, size: blob.size }, options.progress)]++;
    }
  }
  await to.putManifest(descriptor, bytes, tag);
  await to.putManifest(descriptor, bytes, LATEST_TAG);
  return { ...counts, digest: descriptor.digest };
}

/**
 * `rootstock promote REPOSITORY:TAG... --to DEST [--from SRC]`: each `pre-TAG` in
 * SRC (default DEST) becomes `TAG` in DEST. `TAG` may be given with or without `pre-`.
 */
export async function promote(
  targets: Array<{ repository: string; tag: string }>,
  to: Destination,
  options: { from?: Destination; progress?: ProgressSink } = {},
): Promise<PromoteResult[]> {
  const progress = options.progress ?? silentProgress;
  const from = options.from ?? to;
  const results: PromoteResult[] = [];
  for (const target of targets) {
    const parsed = parseChannelTag(target.tag);
    if (!parsed) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `promote ${target.repository}:${target.tag}: not a rootstock tag ([pre-][PREFIX-]HASH)`,
      );
    }
    const source = await from.open(target.repository, channelTag(parsed.tag, "pre-merge"));
    const dest = await to.open(target.repository, parsed.tag);
    try {
      const id = `promote:${target.repository}`;
      progress({ type: "start", id, label: `promote ${target.repository}:${parsed.tag}` });
      const r = await promoteManifest(source, dest, parsed.tag, {
        sameRepository: from.reference(target.repository, "t") === to.reference(target.repository, "t"),
        progress,
      });
      progress({ type: "done", id });
      results.push({
        repository: target.repository,
        tag: parsed.tag,
        digest: r.digest,
        blobs: { exists: r.exists, mounted: r.mounted, uploaded: r.uploaded },
      });
    } finally {
      await source.close();
      await dest.close();
    }
  }
  return results;
}

/** `14d`, `36h`, `90m`, `3600s` → milliseconds. */
export function parseAge(text: string, what = "--keep-pre-merge"): number {
  const m = /^(\d+)([smhdw])$/.exec(text.trim());
  if (!m)
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `${what} ${JSON.stringify(text)}: expected a number and s, m, h, d or w (e.g. 14d)`,
    );
  const unit = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[m[2] as "s" | "m" | "h" | "d" | "w"];
  return Number(m[1]) * unit * 1000;
}

export interface ExpiredTag {
  repository: string;
  tag: string;
  ageMs: number;
}

/**
 * Deletes the store's pre-merge tags (`pre-…` rootstock tags) set longer than
 * `maxAgeMs` ago; post-merge and foreign tags are never touched. A tag's age is its
 * ref file's mtime: the config cannot tell (it is reproducible), and every setRef
 * writes the ref file anew. Run gc afterwards to free what only they kept.
 */
export async function expirePreMerge(
  store: ContentStore,
  maxAgeMs: number,
  options: { now?: number; dryRun?: boolean } = {},
): Promise<ExpiredTag[]> {
  const now = options.now ?? Date.now();
  const expired: ExpiredTag[] = [];
  for (const ref of await store.listRefs()) {
    if (parseChannelTag(ref.tag)?.channel !== "pre-merge") continue;
    // the store's documented layout: refs/<uri-escaped repository>/<tag>
    const path = join(store.root, "refs", encodeURIComponent(ref.repository), ref.tag);
    const info = await stat(path).catch(() => undefined);
    if (!info) continue;
    const ageMs = now - info.mtimeMs;
    if (ageMs <= maxAgeMs) continue;
    if (!options.dryRun) await store.deleteRef(ref.repository, ref.tag);
    expired.push({ repository: ref.repository, tag: ref.tag, ageMs });
  }
  return expired;
}
