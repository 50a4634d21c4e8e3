/**
 * OCI (and Docker schema 2) documents: descriptor, image manifest, index / manifest
 * list, image config. Parsed from bytes with zod; every failure becomes one
 * INVALID_FORMAT line naming the document and the field path, e.g.
 * `manifest: layers[2].digest: not a sha256 digest: "..."`.
 *
 * Objects are parsed loosely: fields we do not model are kept, so a document read
 * and written again loses nothing.
 */
import { z } from "zod";
import { RootstockError } from "../errors.js";
import { type Digest, isDigest } from "./digest.js";
import { isConfigMediaType, isIndexMediaType, isManifestMediaType } from "./mediatypes.js";

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

const digestSchema = z.custom<Digest>((v) => isDigest(v), {
  error: (iss) => (iss.input === undefined ? undefined : digestProblem(iss.input)),
});

const annotationsSchema = z.record(z.string(), z.string());

const mediaTypeSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/, {
    error: (iss) => `not a media type: ${JSON.stringify(iss.input)}`,
  });

export const platformSchema = z.looseObject({
  architecture: z.string().min(1),
  os: z.string().min(1),
  "os.version": z.string().optional(),
  "os.features": z.array(z.string()).optional(),
  variant: z.string().optional(),
  features: z.array(z.string()).optional(),
});

export type PlatformSpec = z.infer<typeof platformSchema>;

export const descriptorSchema = z.looseObject({
  mediaType: mediaTypeSchema,
  digest: digestSchema,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: annotationsSchema.optional(),
  data: z.string().optional(),
  platform: platformSchema.optional(),
  artifactType: mediaTypeSchema.optional(),
});

export type Descriptor = z.infer<typeof descriptorSchema>;

export const manifestSchema = z.looseObject({
  schemaVersion: z.literal(2, { error: (iss) => `must be 2, got ${JSON.stringify(iss.input)}` }),
  mediaType: z.string().optional(),
  artifactType: mediaTypeSchema.optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
  subject: descriptorSchema.optional(),
  annotations: annotationsSchema.optional(),
});

export type ImageManifest = z.infer<typeof manifestSchema>;

export const indexSchema = z.looseObject({
  schemaVersion: z.literal(2, { error: (iss) => `must be 2, got ${JSON.stringify(iss.input)}` }),
  mediaType: z.string().optional(),
  artifactType: mediaTypeSchema.optional(),
  manifests: z.array(descriptorSchema),
  subject: descriptorSchema.optional(),
  annotations: annotationsSchema.optional(),
});

export type ImageIndex = z.infer<typeof indexSchema>;

// Docker writes null for empty lists and maps; accept it when reading.
const strings = z.array(z.string()).nullish();
const emptyObjects = z.record(z.string(), z.looseObject({})).nullish();

export const containerConfigSchema = z.looseObject({
  User: z.string().optional(),
  ExposedPorts: emptyObjects,
  Env: strings,
  Entrypoint: strings,
  Cmd: strings,
  Volumes: emptyObjects,
  WorkingDir: z.string().optional(),
  Labels: z.record(z.string(), z.string()).nullish(),
  StopSignal: z.string().optional(),
  ArgsEscaped: z.boolean().optional(),
});

export type ContainerConfig = z.infer<typeof containerConfigSchema>;

export const historySchema = z.looseObject({
  created: z.string().optional(),
  created_by: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  empty_layer: z.boolean().optional(),
});

export type History = z.infer<typeof historySchema>;

export const imageConfigSchema = z.looseObject({
  created: z.string().optional(),
  author: z.string().optional(),
  architecture: z.string().min(1),
  os: z.string().min(1),
  "os.version": z.string().optional(),
  "os.features": z.array(z.string()).optional(),
  variant: z.string().optional(),
  config: containerConfigSchema.optional(),
  rootfs: z.looseObject({
    type: z.literal("layers", { error: (iss) => `must be "layers", got ${JSON.stringify(iss.input)}` }),
    diff_ids: z.array(digestSchema),
  }),
  history: z.array(historySchema).optional(),
});

export type ImageConfig = z.infer<typeof imageConfigSchema>;

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

/** Validates `value` against `schema`, or throws INVALID_FORMAT naming `what` and the first bad field. */
export function validateDocument<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value, {
    error: (iss) =>
      iss.input === undefined && iss.code === "invalid_type" ? "required field is missing" : undefined,
  });
  if (result.success) return result.data;
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
  return validateDocument(descriptorSchema, value, what);
}

/** An image manifest (OCI or Docker schema 2) from its bytes. */
export function parseManifest(bytes: Uint8Array | string, what = "manifest"): ImageManifest {
  const manifest = validateDocument(manifestSchema, parseJsonBytes(bytes, what), what);
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
  const index = validateDocument(indexSchema, parseJsonBytes(bytes, what), what);
  if (index.mediaType !== undefined && !isIndexMediaType(index.mediaType)) {
    throw new RootstockError(
      "INVALID_FORMAT",
      `${what}: mediaType: ${JSON.stringify(index.mediaType)} is not an index media type`,
    );
  }
  return index;
}

export function parseImageConfig(bytes: Uint8Array | string, what = "config"): ImageConfig {
  return validateDocument(imageConfigSchema, parseJsonBytes(bytes, what), what);
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
