/**
 * images.yaml: the zod schema and the parser that turns YAML text into a validated
 * spec while keeping every node's position, so each error reads
 * `FILE:LINE:COL: images.test-gl.packages[2]: expected string`.
 * Pure: text in, data out.
 */
import { isMap, isScalar, LineCounter, type Node, parseDocument } from "yaml";
import { z } from "zod";
import { RootstockError } from "../errors.js";

/** Architectures by rootstock's (Mesa's) names; see ARCHITECTURES in graph.ts for Debian/OCI names. */
export const ARCH_NAMES = ["x86_64", "x86_32", "arm64", "arm32", "ppc64el", "s390x", "riscv64"] as const;
export type ArchName = (typeof ARCH_NAMES)[number];

const NAME_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const name = z.string().regex(NAME_RE, "expected a lowercase name (a-z, 0-9, inner . _ -)");
const nonEmpty = z.string().min(1, "expected a non-empty string");
const stringList = z.array(nonEmpty);
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected an environment variable name");
const packageName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?([=][A-Za-z0-9.+~:-]+)?$/, "expected a Debian package name");

const arch = z.enum(ARCH_NAMES);

const hooks = z.strictObject({
  setup: stringList.optional(),
  extract: stringList.optional(),
  essential: stringList.optional(),
  customize: stringList.optional(),
});

const mmdebstrapFields = {
  suite: nonEmpty,
  variant: z
    .enum(["extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "standard"])
    .optional(),
  mirrors: stringList.optional(),
  components: stringList.optional(),
  hooks: hooks.optional(),
  "apt-options": stringList.optional(),
  "dpkg-options": stringList.optional(),
};
const mmdebstrap = z.strictObject(mmdebstrapFields);

const fileCopy = z.strictObject({
  src: nonEmpty,
  dest: z.string().regex(/^\/./, "expected an absolute path in the image"),
  mode: z
    .string()
    .regex(/^0?[0-7]{3,4}$/, 'expected an octal mode such as "0644"')
    .optional(),
});

/** Fields an image sets and an `arch:` entry may adjust (lists append, maps merge, scalars replace). */
const adjustableFields = {
  "package-lists": z.array(name).optional(),
  packages: z.array(packageName).optional(),
  files: z.array(fileCopy).optional(),
  scripts: stringList.optional(),
  run: stringList.optional(),
  inputs: stringList.optional(),
  env: z.record(envName, z.string()).optional(),
  labels: z.record(nonEmpty, z.string()).optional(),
  entrypoint: stringList.optional(),
  cmd: stringList.optional(),
  workdir: z.string().regex(/^\//, "expected an absolute path").optional(),
  mmdebstrap: z.strictObject({ ...mmdebstrapFields, suite: nonEmpty.optional() }).optional(),
};
const adjustments = z.strictObject(adjustableFields);

const lavaExport = z.strictObject({
  format: z.enum(["tar", "tar.zst", "tar.gz", "cpio.zst"]).optional(),
  remove: z.array(z.string().regex(/^\/./, "expected an absolute path in the image")).optional(),
});

const image = z.strictObject({
  ...adjustableFields,
  from: nonEmpty.optional(),
  mmdebstrap: mmdebstrap.optional(),
  "tag-prefix": z
    .string()
    .regex(/^[a-z0-9][a-z0-9._]*(?:-[a-z0-9._]+)*$/, "expected a tag prefix: a-z 0-9 . _ and inner -")
    .max(60, "at most 60 characters")
    .refine((p) => p !== "pre" && !p.startsWith("pre-"), 'must not start with "pre" (the pre-merge channel)')
    .optional(),
  arch: z.union([z.array(arch).min(1), z.partialRecord(arch, adjustments.nullable())]).optional(),
  export: z.strictObject({ lava: lavaExport.optional() }).optional(),
});

export const imagesFileSchema = z.strictObject({
  version: z.literal(1),
  "repository-prefix": z
    .string()
    .regex(/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/, "expected a repository path")
    .optional(),
  arch: z.array(arch).min(1).optional(),
  "package-lists": z.record(name, z.array(packageName)).optional(),
  images: z.record(name, image).refine((m) => Object.keys(m).length > 0, "expected at least one image"),
});

export type ImagesFile = z.infer<typeof imagesFileSchema>;
export type ImageSpec = ImagesFile["images"][string];
export type ImageAdjustments = z.infer<typeof adjustments>;
export type MmdebstrapSpec = z.infer<typeof mmdebstrap>;
export type FileCopySpec = z.infer<typeof fileCopy>;
export type LavaExportSpec = z.infer<typeof lavaExport>;

export type SpecPath = ReadonlyArray<string | number>;

/** A validated images.yaml with the means to point back into its text. */
export interface ParsedImagesFile {
  filename: string;
  spec: ImagesFile;
  /** `FILE:LINE:COL` of the node at `path` (or of its nearest existing ancestor). */
  where(path: SpecPath, key?: boolean): string;
}

export function formatPath(path: SpecPath): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? part : `.${part}`;
  }
  return out || "(document)";
}

/** An INVALID_FORMAT error located at `path` in the file. */
export function specError(
  parsed: ParsedImagesFile,
  path: SpecPath,
  message: string,
  key = false,
): RootstockError {
  return new RootstockError("INVALID_FORMAT", `${parsed.where(path, key)}: ${formatPath(path)}: ${message}`);
}

/**
 * Parses and validates images.yaml. Throws INVALID_FORMAT naming file:line:column
 * and the field path for YAML syntax errors, duplicate keys, unknown fields and
 * wrong types.
 */
export function parseImagesFile(text: string, filename: string): ParsedImagesFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const pos = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${filename}:${line}:${col}`;
  };
  const firstError = doc.errors[0];
  if (firstError) {
    const detail = firstError.message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "");
    throw new RootstockError("INVALID_FORMAT", `${pos(firstError.pos[0])}: ${detail}`);
  }
  if (doc.contents === null) throw new RootstockError("INVALID_FORMAT", `${filename}:1:1: the file is empty`);

  /** Walks the YAML node tree; `key` asks for the mapping key instead of the value. */
  const where = (path: SpecPath, key = false): string => {
    let node: unknown = doc.contents;
    let best: Node | undefined = doc.contents ?? undefined;
    for (let i = 0; i < path.length; i++) {
      const part = path[i]!;
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === part);
        if (!pair) break;
        if (last && key && isScalar(pair.key)) {
          best = pair.key;
          break;
        }
        node = pair.value;
      } else if (node && typeof node === "object" && "items" in node && typeof part === "number") {
        node = (node as { items: unknown[] }).items[part];
      } else break;
      if (node && typeof node === "object" && "range" in node) best = node as Node;
      else break;
    }
    return pos(best?.range?.[0] ?? 0);
  };

  const parsed = imagesFileSchema.safeParse(doc.toJS({ maxAliasCount: 1000 }));
  if (!parsed.success) {
    const [issue, path] = innermostIssue(parsed.error.issues[0]!, []);
    const located: ParsedImagesFile = { filename, spec: {} as ImagesFile, where };
    if (issue.code === "unrecognized_keys") {
      const field = issue.keys[0]!;
      const what =
        path.at(-1) === "arch"
          ? `unknown architecture "${field}" (${ARCH_NAMES.join(", ")})`
          : `unknown field "${field}"`;
      throw specError(located, [...path, field], what, true);
    }
    if (issue.code === "invalid_key") {
      throw specError(located, path, `invalid key: ${simplifyMessage(issue.message)}`, true);
    }
    throw specError(located, path, simplifyMessage(issue.message));
  }
  return { filename, spec: parsed.data, where };
}

type Issue = z.core.$ZodIssue;

/** A union's own issue says only "Invalid input": report the branch that got furthest. */
function innermostIssue(issue: Issue, prefix: Array<string | number>): [Issue, Array<string | number>] {
  const path = [...prefix, ...issue.path.filter((p): p is string | number => typeof p !== "symbol")];
  if (issue.code === "invalid_union" && issue.errors.length > 0) {
    const depth = (branch: Issue[]) =>
      Math.max(...branch.map((i) => i.path.length + (i.code === "invalid_type" ? 0 : 0.5)));
    const best = [...issue.errors].sort((a, b) => depth(b) - depth(a))[0]!;
    if (best[0]) return innermostIssue(best[0], path);
  }
  if (issue.code === "invalid_key" && issue.issues[0]) {
    return [{ ...issue, message: issue.issues[0].message }, path];
  }
  return [issue, path];
}

/** zod says "Invalid input: expected string, received number"; keep the useful half. */
function simplifyMessage(message: string): string {
  return message.replace(/^Invalid input: /, "").replace(/^Invalid option: /, "");
}
