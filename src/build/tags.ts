/**
 * Content tags. An image's tag is a hash of its input record: one entry per input
 * (each definition field, each shared package list, each file read, the parent's tag
 * or the external base, rootstock's layer format version). The record is stored in
 * the image config label `dev.rootstock.inputs`, so a later plan can say which input
 * changed. Pure: a Graph and the file hashes in, records and tags out.
 */
import { createHash } from "node:crypto";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import { filesRead, type Graph, type ImageNode } from "./graph.js";

/**
 * Bumped whenever the bytes rootstock produces for the same root filesystem change
 * (tar normalisation, compression parameters, config layout): every tag changes with it.
 */
export const LAYER_FORMAT_VERSION = 1;

/** The config label holding the JSON InputRecord of the build. */
export const INPUTS_LABEL = "dev.rootstock.inputs";

/**
 * What defined a build, as stored in the `dev.rootstock.inputs` label. Keys name the
 * input so a plan can say what changed:
 *   `layer-format`          rootstock's LAYER_FORMAT_VERSION (decimal)
 *   `parent:NAME`           the parent image's tag
 *   `base:REFERENCE`        an external base: its digest when pinned, else the reference
 *   `field:NAME`            sha256 of the canonical JSON of one definition field
 *   `package-list:NAME`     sha256 of the shared list's sorted packages
 *   `file:PATH`             sha256 of a file (or tree hash of a directory) relative to images.yaml
 */
export interface InputRecord {
  version: 1;
  /** The image id (NAME@ARCH) the record was made for. */
  image: string;
  inputs: Record<string, string>;
}

/** Hash per relative path, from hashInputFiles (inputs.ts) or a test. */
export type FileHashes = ReadonlyMap<string, Digest>;

/** Number of base32 characters of the hash in a tag: 26 × 5 = 130 bits. */
export const TAG_HASH_CHARS = 26;
export const PRE_MERGE_PREFIX = "pre-";
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const HASH_RE = new RegExp(`^[a-z2-7]{${TAG_HASH_CHARS}}$`);

/** JSON with object keys sorted at every level: equal data, equal bytes. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function sha256Of(text: string): Digest {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** RFC 4648 base32, lower case, no padding: only tag-safe characters. */
function base32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The definition fields that shape the root filesystem or its config, one input each. */
function definitionFields(node: ImageNode): Record<string, unknown> {
  const fields: Record<string, unknown> = { arch: node.arch.debian };
  if (node.base.kind === "mmdebstrap") {
    // include is covered by the packages and package-list inputs
    const { include: _include, ...options } = node.base.options;
    fields.mmdebstrap = options;
  }
  if (node.base.kind === "import") fields.import = node.base.source;
  if (node.ownPackages.length > 0) fields.packages = node.ownPackages;
  if (node.script) {
    const { files, scripts, run, env } = node.script;
    if (files.length) fields.files = files;
    if (scripts.length) fields.scripts = scripts;
    if (run.length) fields.run = run;
    if (Object.keys(env).length) fields.env = env;
  }
  const { config } = node;
  if (config.entrypoint) fields.entrypoint = config.entrypoint;
  if (config.cmd) fields.cmd = config.cmd;
  if (config.workdir) fields.workdir = config.workdir;
  if (Object.keys(config.labels).length) fields.labels = config.labels;
  return fields;
}

/** The input record of one node, given its parent's tag and the hashes of the files it reads. */
export function inputRecord(
  graph: Graph,
  node: ImageNode,
  parentTag: string | undefined,
  files: FileHashes,
): InputRecord {
  const inputs: Record<string, string> = { "layer-format": String(LAYER_FORMAT_VERSION) };
  if (node.parent) {
    if (parentTag === undefined) throw new RootstockError("INTERNAL", `${node.id}: parent tag not computed`);
    inputs[`parent:${graph.images.get(node.parent)!.name}`] = parentTag;
  }
  if (node.base.kind === "import" && node.base.source.transport === "docker") {
    const s = node.base.source;
    inputs[`base:${s.reference}`] = s.digest ?? s.reference;
  }
  for (const [field, value] of Object.entries(definitionFields(node))) {
    inputs[`field:${field}`] = sha256Of(canonicalJson(value));
  }
  for (const list of node.packageLists) {
    inputs[`package-list:${list}`] = sha256Of(canonicalJson([...new Set(graph.packageLists[list])].sort()));
  }
  for (const path of filesRead(node)) {
    const hash = files.get(path);
    if (!hash) throw new RootstockError("INTERNAL", `${node.id}: file ${path} was not hashed`);
    inputs[`file:${path}`] = hash;
  }
  return { version: 1, image: node.id, inputs };
}

/** `PREFIX-HASH` (or `HASH`): the first 130 bits of sha256(canonical record), base32. */
export function tagFromRecord(record: InputRecord, prefix?: string): string {
  const digest = createHash("sha256").update(canonicalJson(record.inputs)).digest();
  const hash = base32(digest).slice(0, TAG_HASH_CHARS);
  const tag = prefix ? `${prefix}-${hash}` : hash;
  if (!TAG_RE.test(`${PRE_MERGE_PREFIX}${tag}`)) {
    throw new RootstockError("INVALID_ARGUMENT", `tag ${tag} does not fit the OCI tag grammar`);
  }
  return tag;
}

export interface ImageTag {
  tag: string;
  record: InputRecord;
}

/** Records and tags of every node, parents first (a child's record holds its parent's tag). */
export function computeTags(graph: Graph, files: FileHashes): Map<string, ImageTag> {
  const out = new Map<string, ImageTag>();
  for (const id of graph.order) {
    const node = graph.images.get(id)!;
    const parentTag = node.parent ? out.get(node.parent)?.tag : undefined;
    const record = inputRecord(graph, node, parentTag, files);
    out.set(id, { tag: tagFromRecord(record, node.tagPrefix), record });
  }
  return out;
}

// Channels: one repository, two tags. A pre-merge build is pushed as `pre-TAG`;
// promotion PUTs the same manifest under `TAG` (no blob moves, no cross-repository
// mount); gc deletes `pre-*` tags older than the kept age.

export type Channel = "pre-merge" | "post-merge";

export function channelTag(tag: string, channel: Channel): string {
  return channel === "pre-merge" ? `${PRE_MERGE_PREFIX}${tag}` : tag;
}

/** Recognises a rootstock tag and its channel; undefined for tags rootstock did not make. */
export function parseChannelTag(tag: string): { channel: Channel; tag: string; prefix?: string } | undefined {
  const pre = tag.startsWith(PRE_MERGE_PREFIX);
  const bare = pre ? tag.slice(PRE_MERGE_PREFIX.length) : tag;
  const dash = bare.lastIndexOf("-");
  const hash = dash >= 0 ? bare.slice(dash + 1) : bare;
  const prefix = dash >= 0 ? bare.slice(0, dash) : undefined;
  if (!HASH_RE.test(hash)) return undefined;
  if (prefix !== undefined && (prefix === "pre" || prefix.startsWith(PRE_MERGE_PREFIX) || prefix === "")) {
    return undefined;
  }
  return { channel: pre ? "pre-merge" : "post-merge", tag: bare, ...(prefix ? { prefix } : {}) };
}

/** Reads a `dev.rootstock.inputs` label value; undefined when absent or not ours. */
export function parseInputRecord(label: string | undefined): InputRecord | undefined {
  if (!label) return undefined;
  try {
    const value = JSON.parse(label) as InputRecord;
    if (value?.version !== 1 || typeof value.image !== "string" || typeof value.inputs !== "object")
      return undefined;
    if (!Object.values(value.inputs).every((v) => typeof v === "string")) return undefined;
    return value;
  } catch {
    return undefined;
  }
}

/** The label value to store at build time (canonical, so it is reproducible). */
export function formatInputRecord(record: InputRecord): string {
  return canonicalJson(record);
}
