/**
 * What refs keep alive: refs → manifests/indexes (parsed with the oci module) →
 * configs, layers, subjects, children; and metadata documents keyed by a reachable
 * digest → the blobs and file objects they name. Shared by gc (what to keep) and
 * fsck (what must be present).
 */
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import { isIndexMediaType, isManifestMediaType } from "../oci/mediatypes.js";
import { type Descriptor, parseImageDocument } from "../oci/types.js";
import type { ContentStore } from "./store.js";

export interface Reachability {
  /** Digests reachable from refs (whether or not their blob is present). */
  blobs: Set<Digest>;
  files: Set<Digest>;
  /** Metadata documents kept (their key is reachable). */
  meta: Set<Digest>;
  /** Reachable digests whose blob is absent, with who points at them. */
  missing: Array<{ digest: Digest; from: string; optional: boolean }>;
  /** Reachable manifests or indexes that could not be parsed. */
  unreadable: Array<{ digest: Digest; from: string; error: string }>;
}

function isDocument(desc: Descriptor): boolean {
  return isManifestMediaType(desc.mediaType) || isIndexMediaType(desc.mediaType);
}

/**
 * Walks the graph from every ref. Missing blobs are recorded, not thrown; a layer
 * with `urls` (non-distributable) or a metadata document standing in for it may be
 * absent by design (`optional`).
 */
export async function computeReachability(store: ContentStore): Promise<Reachability> {
  const r: Reachability = {
    blobs: new Set(),
    files: new Set(),
    meta: new Set(),
    missing: [],
    unreadable: [],
  };
  const queue: Array<{ desc: Descriptor; from: string }> = [];
  for (const ref of await store.listRefs())
    queue.push({ desc: ref.descriptor, from: `ref ${ref.repository}:${ref.tag}` });

  while (queue.length > 0) {
    const { desc, from } = queue.shift()!;
    if (r.blobs.has(desc.digest)) continue;
    r.blobs.add(desc.digest);
    const meta = await store.getMeta(desc.digest).catch(() => undefined);
    if (meta) {
      r.meta.add(desc.digest);
      for (const d of meta.blobs ?? []) r.blobs.add(d);
      for (const d of meta.files ?? []) r.files.add(d);
    }
    if (!(await store.hasBlob(desc.digest))) {
      const optional = (desc.urls?.length ?? 0) > 0 || meta?.standsInForBlob === true;
      r.missing.push({ digest: desc.digest, from, optional });
      continue;
    }
    if (!isDocument(desc)) continue;
    let doc: ReturnType<typeof parseImageDocument>;
    try {
      const bytes = await store.readBlob({ digest: desc.digest, size: desc.size });
      doc = parseImageDocument(bytes, desc.mediaType, `manifest ${desc.digest}`);
    } catch (err) {
      r.unreadable.push({ digest: desc.digest, from, error: (err as Error).message });
      continue;
    }
    const here = `${from} → ${desc.digest}`;
    if (doc.kind === "index") {
      for (const child of doc.index.manifests) queue.push({ desc: child, from: here });
      if (doc.index.subject) queue.push({ desc: doc.index.subject, from: here });
    } else {
      queue.push({ desc: doc.manifest.config, from: here });
      for (const layer of doc.manifest.layers) queue.push({ desc: layer, from: here });
      if (doc.manifest.subject) queue.push({ desc: doc.manifest.subject, from: here });
    }
  }
  return r;
}

/** gc refuses to run on a graph it cannot read completely: it would delete live objects. */
export function assertWalkable(r: Reachability): void {
  const bad = r.unreadable[0];
  if (bad) {
    throw new RootstockError(
      "STORE_CORRUPT",
      `gc: cannot read ${bad.digest} (from ${bad.from}): ${bad.error}; run fsck, nothing was deleted`,
    );
  }
}
