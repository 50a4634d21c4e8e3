/**
 * OCI (and Docker schema 2) documents: descriptor, image manifest, index / manifest
 * list, image config. Checked by shapes (shape.ts; zod words the errors); every failure becomes one
 * INVALID_FORMAT line naming the document and the field path, e.g.
 * `manifest: layers[2].digest: not a sha256 digest: "..."`.
 *
 * Objects are parsed loosely: fields we do not model are kept, so a document read
 * and written again loses nothing.
 */
import { RootstockError } from "../errors.js";
import { type Digest, isDigest } from "./digest.js";
import { isConfigMediaType, isIndexMediaType, isManifestMediaType } from "./mediatypes.js";
import {
  array,
  boolean,
  count,
  custom,
  type Infer,
  literal,
  loadZod,
  looseObject,
  nullish,
  optional,
  record,
  type Shape,
  string,
} from "./shape.js";

/** Why a value is not an acceptable digest (the text parseDigest uses), or undefined. */
function digestProblem(value: unknown): string | undefined {
  if (isDigest(value)) return undefined;
  if (
    typeof value === "string" &&
    /^[a-z0-9]+([+._-][a-z0-9]+)*:/.test(value) &&
    !value.startsWith("sha256:")
  ) {
    return `unsupported digest algorithm in ${JSON.stringify(value)}`;
  }
  return `not a sha256 digest: ${JSON.stringify(value)}`;
}

const digestShape = custom<Digest>(
  (v) => isDigest(v),
  (iss) => (iss.input === undefined ? undefined : digestProblem(iss.input)),
);

const annotationsShape = record(string());

const mediaTypeShape = string({
  regex: /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/,
  error: (iss) => `not a media type: ${JSON.stringify(iss.input)}`,
});

const schemaVersion2 = literal(2, (iss) => `must be 2, got ${JSON.stringify(iss.input)}`);

export const platformShape = looseObject({
  architecture: string({ min: 1 }),
  os: string({ min: 1 }),
  "os.version": optional(string()),
  "os.features": optional(array(string())),
  variant: optional(string()),
  features: optional(array(string())),
});

export type PlatformSpec = Infer<typeof platformShape>;

export const descriptorShape = looseObject({
  mediaType: mediaTypeShape,
  digest: digestShape,
  size: count(),
  urls: optional(array(string())),
  annotations: optional(annotationsShape),
  data: optional(string()),
  platform: optional(platformShape),
  artifactType: optional(mediaTypeShape),
});

export type Descriptor = Infer<typeof descriptorShape>;

export const manifestShape = looseObject({
  schemaVersion: schemaVersion2,
  mediaType: optional(string()),
  artifactType: optional(mediaTypeShape),
  config: descriptorShape,
  layers: array(descriptorShape),
  subject: optional(descriptorShape),
  annotations: optional(annotationsShape),
});

export type ImageManifest = Infer<typeof manifestShape>;

export const indexShape = looseObject({
  schemaVersion: schemaVersion2,
  mediaType: optional(string()),
  artifactType: optional(mediaTypeShape),
  manifests: array(descriptorShape),
  subject: optional(descriptorShape),
  annotations: optional(annotationsShape),
});

export type ImageIndex = Infer<typeof indexShape>;

// Docker writes null for empty lists and maps; accept it when reading.
const strings = nullish(array(string()));
const emptyObjects = nullish(record(looseObject({})));

export const containerConfigShape = looseObject({
  User: optional(string()),
  ExposedPorts: emptyObjects,
  Env: strings,
  Entrypoint: strings,
  Cmd: strings,
  Volumes: emptyObjects,
  WorkingDir: optional(string()),
  Labels: nullish(record(string())),
  StopSignal: optional(string()),
  ArgsEscaped: optional(boolean()),
});

export type ContainerConfig = Infer<typeof containerConfigShape>;

export const historyShape = looseObject({
  created: optional(string()),
  created_by: optional(string()),
  author: optional(string()),
  comment: optional(string()),
  empty_layer: optional(boolean()),
});

export type History = Infer<typeof historyShape>;

export const imageConfigShape = looseObject({
  created: optional(string()),
  author: optional(string()),
  architecture: string({ min: 1 }),
  os: string({ min: 1 }),
  "os.version": optional(string()),
  "os.features": optional(array(string())),
  variant: optional(string()),
  config: optional(containerConfigShape),
  rootfs: looseObject({
    type: literal("layers", (iss) => `must be "layers", got ${JSON.stringify(iss.input)}`),
    diff_ids: array(digestShape),
  }),
  history: optional(array(historyShape)),
});

export type ImageConfig = Infer<typeof imageConfigShape>;

/** `layers[2].digest` from zod's path array. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)) out += out ? `.${key}` : key;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

/**
 * `value` when it has `shape`, or INVALID_FORMAT naming `what` and the first bad
 * field (worded by zod, loaded only then).
 */
export function validateDocument<T>(shape: Shape<T>, value: unknown, what: string): T {
  if (shape.check(value)) return value as T;
  const result = shape.zod(loadZod()).safeParse(value, {
    error: (iss) =>
      iss.input === undefined && iss.code === "invalid_type" ? "required field is missing" : undefined,
  });
  if (result.success) return result.data as T;
  const issues = result.error.issues;
  const first = issues[0]!;
  const field = formatFieldPath(first.path);
  const more =
    issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : "";
  throw new RootstockError("INVALID_FORMAT", `${what}: ${field ? `${field}: ` : ""}${first.message}${more}`);
}

/** JSON.parse of UTF-8 bytes, failing as INVALID_FORMAT naming `what`. */
export function parseJsonBytes(bytes: Uint8Array | string, what: string): unknown {
  const text = typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RootstockError("INVALID_FORMAT", `${what}: not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export function parseDescriptor(value: unknown, what = "descriptor"): Descriptor {
  return validateDocument(descriptorShape, value, what);
}

/** An image manifest (OCI or Docker schema 2) from its bytes. */
export function parseManifest(bytes: Uint8Array | string, what = "manifest"): ImageManifest {
  const manifest = validateDocument(manifestShape, parseJsonBytes(bytes, what), what);
  if (manifest.mediaType !== undefined && !isManifestMediaType(manifest.mediaType)) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `${what}: mediaType: ${JSON.stringify(manifest.mediaType)} is not an image manifest media type`,
    );
  }
  return manifest;
}

/** An image index (OCI) or manifest list (Docker) from its bytes. */
export function parseIndex(bytes: Uint8Array | string, what = "index"): ImageIndex {
  const index = validateDocument(indexShape, parseJsonBytes(bytes, what), what);
  if (index.mediaType !== undefined && !isIndexMediaType(index.mediaType)) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `${what}: mediaType: ${JSON.stringify(index.mediaType)} is not an index media type`,
    );
  }
  return index;
}

export function parseImageConfig(bytes: Uint8Array | string, what = "config"): ImageConfig {
  return validateDocument(imageConfigShape, parseJsonBytes(bytes, what), what);
}

export type ImageDocument =
  | { kind: "manifest"; manifest: ImageManifest }
  | { kind: "index"; index: ImageIndex };

/**
 * A manifest or an index, told apart by the descriptor's media type when known,
 * else by the document's own `mediaType`, else by its shape (`manifests` vs `layers`).
 */
export function parseImageDocument(
  bytes: Uint8Array | string,
  mediaType?: string,
  what = "manifest",
): ImageDocument {
  let kind: "manifest" | "index" | undefined;
  if (isManifestMediaType(mediaType)) kind = "manifest";
  else if (isIndexMediaType(mediaType)) kind = "index";
  const value = parseJsonBytes(bytes, what);
  if (kind === undefined && value !== null && typeof value === "object") {
    const doc = value as Record<string, unknown>;
    if (isIndexMediaType(doc.mediaType as string) || (doc.mediaType === undefined && "manifests" in doc)) {
      kind = "index";
    } else if (
      isManifestMediaType(doc.mediaType as string) ||
      (doc.mediaType === undefined && "layers" in doc)
    ) {
      kind = "manifest";
    }
  }
  if (kind === undefined) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `${what}: neither an image manifest nor an index${mediaType ? ` (media type ${mediaType})` : ""}`,
    );
  }
  const text = typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8");
  return kind === "index"
    ? { kind, index: parseIndex(text, what) }
    : { kind, manifest: parseManifest(text, what) };
}

/**
 * A manifest's layers and its config's diff_ids must pair up one to one. Image
 * readers call this once both documents are known.
 */
export function checkDiffIds(manifest: ImageManifest, config: ImageConfig, what = "image"): void {
  const layers = manifest.layers.length;
  const diffIds = config.rootfs.diff_ids.length;
  if (layers !== diffIds) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `${what}: config rootfs.diff_ids has ${diffIds} entries but the manifest has ${layers} layers`,
    );
  }
  if (!isConfigMediaType(manifest.config.mediaType)) {
    // Artifacts carry other config types; an image reader expects an image config.
    throw new RootstockError(
      "INVALID_FORMAT",
      `${what}: config.mediaType: ${JSON.stringify(manifest.config.mediaType)} is not an image config`,
    );
  }
}
