/**
 * The image graph: images.yaml resolved into one concrete node per (image, arch),
 * parents linked, shared package lists expanded, in topological order. Pure: a
 * ParsedImagesFile in, a Graph out; every semantic error names file:line:column.
 */
import { posix } from "node:path";
import type { Digest } from "../oci/digest.js";
import {
  ARCH_NAMES,
  type ArchName,
  type FileCopySpec,
  type ImageAdjustments,
  type ImageSpec,
  type LavaExportSpec,
  type ParsedImagesFile,
  parseImagesFile,
  type SpecPath,
  specError,
} from "./schema.js";

export interface ArchInfo {
  name: ArchName;
  /** dpkg architecture, what mmdebstrap --architectures takes. */
  debian: string;
  /** OCI platform. */
  oci: { os: "linux"; architecture: string; variant?: string };
}

export const ARCHITECTURES: Record<ArchName, ArchInfo> = {
  x86_64: { name: "x86_64", debian: "amd64", oci: { os: "linux", architecture: "amd64" } },
  x86_32: { name: "x86_32", debian: "i386", oci: { os: "linux", architecture: "386" } },
  arm64: { name: "arm64", debian: "arm64", oci: { os: "linux", architecture: "arm64", variant: "v8" } },
  arm32: { name: "arm32", debian: "armhf", oci: { os: "linux", architecture: "arm", variant: "v7" } },
  ppc64el: { name: "ppc64el", debian: "ppc64el", oci: { os: "linux", architecture: "ppc64le" } },
  s390x: { name: "s390x", debian: "s390x", oci: { os: "linux", architecture: "s390x" } },
  riscv64: { name: "riscv64", debian: "riscv64", oci: { os: "linux", architecture: "riscv64" } },
};

/** Where an image's starting root filesystem comes from, outside the graph. */
export type ImportSource =
  /** A registry image; `pinned` when the reference carries a digest. */
  | { transport: "docker"; reference: string; pinned: boolean; digest?: Digest }
  /** An OCI image layout directory (path relative to images.yaml) and a tag or digest in it. */
  | { transport: "oci"; path: string; ref: string }
  /** A root filesystem tarball (path relative to images.yaml), extracted as is. */
  | { transport: "tarball"; path: string };

export interface MmdebstrapOptions {
  suite: string;
  variant: string;
  /** dpkg architecture. */
  architecture: string;
  mirrors: string[];
  components: string[];
  /** Packages passed to --include (sorted, deduplicated). */
  include: string[];
  /** Hook script paths (relative to images.yaml), run with the root directory as $1. */
  hooks: { setup: string[]; extract: string[]; essential: string[]; customize: string[] };
  aptOptions: string[];
  dpkgOptions: string[];
}

/** The first step: what the root filesystem starts from. */
export type BaseStep =
  | { kind: "mmdebstrap"; options: MmdebstrapOptions }
  | { kind: "parent"; parent: string }
  | { kind: "import"; source: ImportSource };

/** The second step: commands run in a chroot of the root filesystem (the `script` producer). */
export interface ScriptStep {
  /** apt-get install (sorted, deduplicated); empty for mmdebstrap bases, which --include them. */
  packages: string[];
  files: Array<Required<Pick<FileCopySpec, "src" | "dest">> & { mode: number }>;
  scripts: string[];
  run: string[];
  env: Record<string, string>;
}

export interface ImageConfigSpec {
  env: Record<string, string>;
  entrypoint?: string[];
  cmd?: string[];
  workdir?: string;
  labels: Record<string, string>;
}

export interface ImageNode {
  /** `NAME@ARCH`, unique in the graph. */
  id: string;
  name: string;
  arch: ArchInfo;
  /** Registry path below the project's registry, Mesa style: `debian/x86_64_test-gl`. */
  repository: string;
  tagPrefix?: string;
  /** The node id of the parent in the graph, if any. */
  parent?: string;
  children: string[];
  base: BaseStep;
  script?: ScriptStep;
  /** Shared package lists used, by name (their packages are in script.packages or mmdebstrap include). */
  packageLists: string[];
  /** Packages the image names itself (sorted, deduplicated), apart from shared lists. */
  ownPackages: string[];
  /** Extra files or directories that define the tag without being copied (relative paths). */
  extraInputs: string[];
  config: ImageConfigSpec;
  export: { lava?: Required<LavaExportSpec> };
  /** Positions for errors that the I/O edge finds later (missing file...). */
  where: (path: SpecPath) => string;
}

export interface Graph {
  filename: string;
  packageLists: Record<string, string[]>;
  images: Map<string, ImageNode>;
  /** Node ids, parents before children, stable (file order). */
  order: string[];
}

const NAME_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const DEFAULT_MIRROR = "http://deb.debian.org/debian";

/** Parses images.yaml text and resolves it: the whole pure front end in one call. */
export function loadGraph(text: string, filename: string): Graph {
  return resolveGraph(parseImagesFile(text, filename));
}

/** Sorted, deduplicated: apt does not care about order, so reordering must not rebuild. */
function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

/**
 * A path relative to images.yaml, normalised; refuses absolute paths and paths that
 * climb out of the file's directory (symlinks are checked when files are hashed).
 */
export function checkRelativePath(parsed: ParsedImagesFile, path: SpecPath, value: string): string {
  if (value.startsWith("/"))
    throw specError(parsed, path, `${value}: expected a path relative to images.yaml`);
  const normal = posix.normalize(value).replace(/\/+$/, "");
  if (normal === ".." || normal.startsWith("../") || normal === "." || normal === "") {
    throw specError(parsed, path, `${value}: path leaves the directory of images.yaml`);
  }
  return normal;
}

export function parseImportSource(parsed: ParsedImagesFile, path: SpecPath, from: string): ImportSource {
  if (from.startsWith("tarball:")) {
    return { transport: "tarball", path: checkRelativePath(parsed, path, from.slice(8)) };
  }
  if (from.startsWith("oci:")) {
    const rest = from.slice(4);
    const colon = rest.lastIndexOf(":");
    if (colon <= 0 || colon === rest.length - 1)
      throw specError(parsed, path, `${from}: expected oci:PATH:REF`);
    return {
      transport: "oci",
      path: checkRelativePath(parsed, path, rest.slice(0, colon)),
      ref: rest.slice(colon + 1),
    };
  }
  const reference = from.startsWith("docker://") ? from.slice(9) : from;
  if (!/^[a-z0-9][a-z0-9._:/-]*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/.test(reference)) {
    throw specError(parsed, path, `${from}: not an image reference`);
  }
  const at = reference.indexOf("@sha256:");
  return at >= 0
    ? { transport: "docker", reference, pinned: true, digest: reference.slice(at + 1) as Digest }
    : { transport: "docker", reference, pinned: false };
}

/** Resolves images into nodes per architecture; throws INVALID_FORMAT with positions. */
export function resolveGraph(parsed: ParsedImagesFile): Graph {
  const { spec } = parsed;
  const lists = spec["package-lists"] ?? {};
  const defaultArches: ArchName[] = spec.arch ?? ["x86_64"];
  const names = Object.keys(spec.images);

  // Parents and cycles first, on names: every arch variant shares its image's `from`.
  const parentOf = new Map<string, string | undefined>();
  for (const name of names) {
    const image = spec.images[name]!;
    const at = ["images", name];
    if (image.from !== undefined && image.mmdebstrap !== undefined) {
      throw specError(parsed, [...at, "mmdebstrap"], "an image has either from: or mmdebstrap:, not both");
    }
    if (image.from === undefined && image.mmdebstrap === undefined) {
      throw specError(parsed, at, "expected from: (a parent image or reference) or mmdebstrap: (a base)");
    }
    const from = image.from;
    if (from !== undefined && NAME_RE.test(from)) {
      if (!(from in spec.images)) {
        const known = names.filter((n) => n !== name).join(", ");
        throw specError(parsed, [...at, "from"], `unknown parent "${from}" (images: ${known})`);
      }
      parentOf.set(name, from);
    } else parentOf.set(name, undefined);
  }
  for (const name of names) {
    const seen = [name];
    for (let p = parentOf.get(name); p !== undefined; p = parentOf.get(p)) {
      if (p === name) {
        throw specError(parsed, ["images", name, "from"], `cycle: ${[...seen, p].join(" → ")}`);
      }
      if (seen.includes(p)) break; // a cycle further up, reported from its own members
      seen.push(p);
    }
  }

  // Topological order by names, stable in file order.
  const nameOrder: string[] = [];
  const placed = new Set<string>();
  const place = (name: string) => {
    if (placed.has(name)) return;
    const parent = parentOf.get(name);
    if (parent) place(parent);
    placed.add(name);
    nameOrder.push(name);
  };
  for (const name of names) place(name);

  const images = new Map<string, ImageNode>();
  const archesOf = new Map<string, ArchName[]>();
  const order: string[] = [];
  for (const name of nameOrder) {
    const image = spec.images[name]!;
    const at = ["images", name];
    const parentName = parentOf.get(name);
    const arches = imageArches(image, parentName ? archesOf.get(parentName)! : defaultArches);
    archesOf.set(name, arches);
    for (const archName of arches) {
      if (parentName && !archesOf.get(parentName)!.includes(archName)) {
        throw specError(
          parsed,
          [...at, "arch"],
          `architecture ${archName} is not built by parent "${parentName}" (${archesOf.get(parentName)!.join(", ")})`,
        );
      }
      const adjustments = archAdjustments(image, archName);
      const parentNode = parentName ? images.get(`${parentName}@${archName}`) : undefined;
      const node = resolveNode(parsed, name, image, adjustments, ARCHITECTURES[archName], lists, parentNode);
      images.set(node.id, node);
      order.push(node.id);
      if (node.parent) images.get(node.parent)!.children.push(node.id);
    }
  }
  return { filename: parsed.filename, packageLists: lists, images, order };
}

function imageArches(image: ImageSpec, inherited: ArchName[]): ArchName[] {
  if (image.arch === undefined) return inherited;
  const listed = Array.isArray(image.arch) ? image.arch : (Object.keys(image.arch) as ArchName[]);
  return ARCH_NAMES.filter((a) => listed.includes(a));
}

function archAdjustments(image: ImageSpec, arch: ArchName): ImageAdjustments {
  if (image.arch === undefined || Array.isArray(image.arch)) return {};
  return image.arch[arch] ?? {};
}

function resolveNode(
  parsed: ParsedImagesFile,
  name: string,
  image: ImageSpec,
  adj: ImageAdjustments,
  arch: ArchInfo,
  lists: Record<string, string[]>,
  parentNode: ImageNode | undefined,
): ImageNode {
  const parentName = parentNode?.name;
  const inherited = parentNode?.config;
  const at = ["images", name];
  const adjAt = [...at, "arch", arch.name];
  const concat = <T>(a: T[] | undefined, b: T[] | undefined): T[] => [...(a ?? []), ...(b ?? [])];

  const listNames = concat(image["package-lists"], adj["package-lists"]);
  listNames.forEach((list, i) => {
    if (!(list in lists)) {
      const own = image["package-lists"]?.length ?? 0;
      const path = i < own ? [...at, "package-lists", i] : [...adjAt, "package-lists", i - own];
      throw specError(
        parsed,
        path,
        `unknown package list "${list}" (defined: ${Object.keys(lists).join(", ")})`,
      );
    }
  });
  const ownPackages = sortedUnique(concat(image.packages, adj.packages));
  const allPackages = sortedUnique([...ownPackages, ...listNames.flatMap((l) => lists[l]!)]);

  const relPaths = (field: "scripts" | "inputs") => {
    const own = image[field] ?? [];
    return concat(own, adj[field]).map((p, i) =>
      checkRelativePath(parsed, i < own.length ? [...at, field, i] : [...adjAt, field, i - own.length], p),
    );
  };
  const ownFiles = image.files ?? [];
  const files = concat(ownFiles, adj.files).map((f, i) => {
    const path =
      i < ownFiles.length ? [...at, "files", i, "src"] : [...adjAt, "files", i - ownFiles.length, "src"];
    return {
      src: checkRelativePath(parsed, path, f.src),
      dest: posix.normalize(f.dest),
      mode: Number.parseInt(f.mode ?? "0644", 8),
    };
  });
  const scripts = relPaths("scripts");
  const run = concat(image.run, adj.run);
  // Like a Dockerfile's FROM: the parent's environment, entrypoint and labels carry over.
  const env = { ...inherited?.env, ...image.env, ...adj.env };

  let base: BaseStep;
  let parent: string | undefined;
  if (image.mmdebstrap) {
    const m = { ...image.mmdebstrap, ...adj.mmdebstrap };
    const hookPaths = (kind: keyof MmdebstrapOptions["hooks"]) => {
      const own = image.mmdebstrap?.hooks?.[kind] ?? [];
      return concat(own, adj.mmdebstrap?.hooks?.[kind]).map((p, i) =>
        checkRelativePath(
          parsed,
          i < own.length
            ? [...at, "mmdebstrap", "hooks", kind, i]
            : [...adjAt, "mmdebstrap", "hooks", kind, i - own.length],
          p,
        ),
      );
    };
    base = {
      kind: "mmdebstrap",
      options: {
        suite: m.suite,
        variant: m.variant ?? "apt",
        architecture: arch.debian,
        mirrors: m.mirrors ?? [DEFAULT_MIRROR],
        components: m.components ?? ["main"],
        include: allPackages,
        hooks: {
          setup: hookPaths("setup"),
          extract: hookPaths("extract"),
          essential: hookPaths("essential"),
          customize: hookPaths("customize"),
        },
        aptOptions: m["apt-options"] ?? [],
        dpkgOptions: m["dpkg-options"] ?? [],
      },
    };
  } else if (parentName) {
    if (adj.mmdebstrap)
      throw specError(parsed, [...adjAt, "mmdebstrap"], "mmdebstrap: applies to bases only");
    parent = `${parentName}@${arch.name}`;
    base = { kind: "parent", parent };
  } else {
    if (adj.mmdebstrap)
      throw specError(parsed, [...adjAt, "mmdebstrap"], "mmdebstrap: applies to bases only");
    base = { kind: "import", source: parseImportSource(parsed, [...at, "from"], image.from!) };
  }
  const scriptPackages = base.kind === "mmdebstrap" ? [] : allPackages;
  const hasScript = scriptPackages.length + files.length + scripts.length + run.length > 0;

  const lava = image.export?.lava;
  const prefix = parsed.spec["repository-prefix"];
  return {
    id: `${name}@${arch.name}`,
    name,
    arch,
    repository: `${prefix ? `${prefix}/` : ""}${arch.name}_${name}`,
    ...(image["tag-prefix"] ? { tagPrefix: image["tag-prefix"] } : {}),
    ...(parent ? { parent } : {}),
    children: [],
    base,
    ...(hasScript ? { script: { packages: scriptPackages, files, scripts, run, env } } : {}),
    packageLists: sortedUnique(listNames),
    ownPackages,
    extraInputs: relPaths("inputs"),
    config: {
      env,
      ...optional("entrypoint", adj.entrypoint ?? image.entrypoint ?? inherited?.entrypoint),
      ...optional("cmd", adj.cmd ?? image.cmd ?? inherited?.cmd),
      ...optional("workdir", adj.workdir ?? image.workdir ?? inherited?.workdir),
      labels: { ...inherited?.labels, ...image.labels, ...adj.labels },
    },
    export: lava ? { lava: { format: lava.format ?? "tar.zst", remove: lava.remove ?? [] } } : {},
    where: (path) => parsed.where([...at, ...path]),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/** Every file path a node reads, relative to images.yaml: what input hashing must read. */
export function filesRead(node: ImageNode): string[] {
  const paths: string[] = [];
  if (node.base.kind === "mmdebstrap") {
    const h = node.base.options.hooks;
    paths.push(...h.setup, ...h.extract, ...h.essential, ...h.customize);
  }
  if (node.base.kind === "import" && node.base.source.transport === "tarball")
    paths.push(node.base.source.path);
  if (node.base.kind === "import" && node.base.source.transport === "oci") {
    paths.push(posix.join(node.base.source.path, "index.json"));
  }
  if (node.script) paths.push(...node.script.files.map((f) => f.src), ...node.script.scripts);
  paths.push(...node.extraInputs);
  return [...new Set(paths)];
}
