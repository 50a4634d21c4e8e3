/**
 * Where a build goes: one base (`store:[PREFIX]`, `oci:DIR`, `docker://HOST/PATH` or
 * `HOST/PATH` as GitLab's $CI_REGISTRY_IMAGE is written) holding one repository
 * per image (`debian/x86_64_test-gl`). Reads what plan needs from it: the tags of
 * each repository and the input record of its last post-merge build (the
 * `dev.rootstock.inputs` label of the image under `latest`).
 */
import { join } from "node:path";
import { RootstockError } from "../errors.js";
import type { Endpoint, EndpointOptions } from "../image/endpoint.js";
import { parseReference } from "../oci/reference.js";
import { parseImageConfig, parseManifest } from "../oci/types.js";
import type { Graph } from "./graph.js";
import { hashInputFiles } from "./inputs.js";
import { type DestinationState, type Plan, plan } from "./plan.js";
import type { Channel } from "./tags.js";
import { INPUTS_LABEL, type InputRecord, parseInputRecord } from "./tags.js";

/** The moving tag naming a repository's last post-merge image (set by build and promote). */
export const LATEST_TAG = "latest";

export interface Destination {
  /** As the user wrote it. */
  readonly text: string;
  readonly kind: "store" | "oci" | "docker";
  /** The reference of `repository:tag` at this destination, e.g. `store:debian/x86_64_test-gl:TAG`. */
  reference(repository: string, tag: string): string;
  /** An endpoint on `repository`, pointed at `tag`. */
  open(repository: string, tag: string): Promise<Endpoint>;
  /** Tags present in `repository` (none when it does not exist yet). */
  tags(repository: string): Promise<string[]>;
}

/** Parses a build destination; `store:` alone is the local store without a prefix. */
export function parseDestination(text: string, endpoint: EndpointOptions): Destination {
  let kind: Destination["kind"];
  let base: string;
  if (text === "store:" || text.startsWith("store:")) {
    kind = "store";
    base = text.slice(6).replace(/\/+$/, "");
  } else if (text.startsWith("oci:")) {
    kind = "oci";
    base = text.slice(4).replace(/\/+$/, "");
    if (base === "") throw new RootstockError("INVALID_ARGUMENT", `--to ${text}: missing layout directory`);
    if (base.includes(":"))
      throw new RootstockError("INVALID_ARGUMENT", `--to ${text}: a layout directory, not DIR:TAG`);
  } else {
    kind = "docker";
    base = (text.startsWith("docker://") ? text.slice(9) : text).replace(/\/+$/, "");
    if (!base.includes("/") && !base.includes(".") && !base.includes(":")) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `--to ${text}: expected store:[PREFIX], oci:DIR or a registry path (docker://HOST/PATH)`,
      );
    }
  }
  const path = (repository: string) => (base ? `${base}/${repository}` : repository);
  const reference = (repository: string, tag: string) =>
    kind === "store"
      ? `store:${path(repository)}:${tag}`
      : kind === "oci"
        ? `oci:${join(base, repository)}:${tag}`
        : `docker://${path(repository)}:${tag}`;
  // Validate the grammar once, with a placeholder repository and tag.
  parseReference(reference("x", "t"));
  return {
    text,
    kind,
    reference,
    async open(repository, tag) {
      // loaded on use: plan on the store never needs the registry client
      const { openEndpoint } = await import("../image/endpoint.js");
      return openEndpoint(parseReference(reference(repository, tag)), { ...endpoint, create: true });
    },
    async tags(repository) {
      const ref = parseReference(reference(repository, "t"));
      if (ref.transport === "store") {
        const { ContentStore } = await import("../cas/store.js");
        const store = await ContentStore.open(endpoint.storeDir);
        return (await store.listRefs(ref.repository)).map((r) => r.tag);
      }
      if (ref.transport === "oci") {
        const { OciLayout } = await import("../layout/layout.js");
        const layout = await OciLayout.open(ref.path).catch(() => undefined);
        return layout ? layout.tags() : [];
      }
      const { registryClient } = await import("../image/registry-endpoint.js");
      const client = registryClient(ref.registry, endpoint.registry);
      try {
        return await client.repository(ref.repository).listTags();
      } catch (err) {
        // a repository nothing was pushed to yet
        if (err instanceof RootstockError && (err.code === "NOT_FOUND" || err.code === "REGISTRY")) return [];
        throw err;
      } finally {
        await client.close();
      }
    },
  };
}

/** The image config and manifest of `repository:tag` at the destination. */
export async function readImage(dest: Destination, repository: string, tag: string) {
  const endpoint = await dest.open(repository, tag);
  try {
    const descriptor = await endpoint.resolveRoot();
    const manifest = parseManifest(await endpoint.read(descriptor), `${endpoint.name} manifest`);
    const config = parseImageConfig(await endpoint.read(manifest.config), `${endpoint.name} config`);
    return { descriptor, manifest, config };
  } finally {
    await endpoint.close();
  }
}

/** The input record stored in an image's config, if rootstock built it. */
export async function readRecord(
  dest: Destination,
  repository: string,
  tag: string,
): Promise<InputRecord | undefined> {
  const { config } = await readImage(dest, repository, tag);
  return parseInputRecord(config.config?.Labels?.[INPUTS_LABEL]);
}

/** Tags per repository and the last post-merge record per repository, for plan(). */
export async function readDestinationState(
  dest: Destination,
  repositories: Iterable<string>,
): Promise<DestinationState> {
  const state: DestinationState = { tags: {}, lastBuild: {} };
  await Promise.all(
    [...new Set(repositories)].map(async (repository) => {
      const tags = await dest.tags(repository);
      state.tags[repository] = tags;
      if (tags.includes(LATEST_TAG)) {
        state.lastBuild[repository] = await readRecord(dest, repository, LATEST_TAG).catch(() => undefined);
      }
    }),
  );
  return state;
}

/** Plans against the destination: hashes the input files and reads tags and last records. */
export async function planBuild(
  graph: Graph,
  baseDir: string,
  destination: Destination,
  channel: Channel,
): Promise<Plan> {
  const [files, state] = await Promise.all([
    hashInputFiles(graph, baseDir),
    readDestinationState(
      destination,
      [...graph.images.values()].map((n) => n.repository),
    ),
  ]);
  return plan(graph, files, state, { channel });
}
