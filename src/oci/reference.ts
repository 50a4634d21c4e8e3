/**
 * Image references in the style of containers-transports(5):
 *   oci:PATH[:TAG]                              an OCI image layout directory
 *   docker://HOST[:PORT]/REPO[:TAG|@DIGEST]     a registry (docker.io normalised)
 *   store:REPO[:TAG]                            rootstock's local content store
 * Like containers/image, `oci:` splits PATH from TAG at the first colon, so a
 * layout path cannot contain one.
 */
import { RootstockError } from "../errors.js";
import { type Digest, isDigest } from "./digest.js";

export type ImageReference =
  | { transport: "oci"; path: string; tag?: string }
  | {
      transport: "docker";
      /** Host as used on the wire: `registry-1.docker.io`, `127.0.0.1:5000`. */
      registry: string;
      repository: string;
      /** Set unless the reference names a digest; defaults to `latest`. */
      tag?: string;
      digest?: Digest;
    }
  | { transport: "store"; repository: string; tag: string };

export const DOCKER_HUB_REGISTRY = "registry-1.docker.io";
export const DEFAULT_TAG = "latest";

const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
// distribution/reference: path-component = alnum+ (separator alnum+)*, separator = [_.] | __ | [-]+
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT_RE = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
// OCI image layout ref.name: components of alnum joined by -._:@+ or --, separated by /.
const OCI_REF_NAME_RE =
  /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;

function invalid(ref: string, why: string): RootstockError {
  return new RootstockError("INVALID_ARGUMENT", `reference ${JSON.stringify(ref)}: ${why}`);
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** Throws INVALID_ARGUMENT unless `tag` follows the distribution tag grammar. */
export function checkTag(tag: string, what = "tag"): string {
  if (!TAG_RE.test(tag)) {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `${what} ${JSON.stringify(tag)}: must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`,
    );
  }
  return tag;
}

/** Throws INVALID_ARGUMENT unless `name` is a valid OCI layout `org.opencontainers.image.ref.name`. */
export function checkOciRefName(name: string, what = "tag"): string {
  if (!OCI_REF_NAME_RE.test(name)) {
    throw new RootstockError("INVALID_ARGUMENT", `${what} ${JSON.stringify(name)}: not a valid OCI ref name`);
  }
  return name;
}

/** Why `repo` is not a distribution repository path (without host), or undefined. */
function repositoryProblem(repo: string): string | undefined {
  if (repo === "") return "empty repository name";
  if (repo.length > 255) return "repository name longer than 255 characters";
  for (const component of repo.split("/")) {
    if (!PATH_COMPONENT_RE.test(component)) {
      return `repository component ${JSON.stringify(component)} must be lowercase letters and digits separated by '.', '_', '__' or '-'`;
    }
  }
  return undefined;
}

function hostProblem(host: string): string | undefined {
  let name = host;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(host);
  if (v6) return v6[2] !== undefined && Number(v6[2]) > 65535 ? `port ${v6[2]} out of range` : undefined;
  const colon = host.lastIndexOf(":");
  if (colon >= 0) {
    const port = host.slice(colon + 1);
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) return `bad port ${JSON.stringify(port)}`;
    name = host.slice(0, colon);
  }
  if (!name.split(".").every((c) => DOMAIN_COMPONENT_RE.test(c)))
    return `bad registry host ${JSON.stringify(host)}`;
  return undefined;
}

/** Splits `NAME[:TAG][@DIGEST]`; the tag colon is the last one after the last slash. */
function splitNameTagDigest(rest: string): { name: string; tag?: string; digest?: string } {
  let name = rest;
  let digest: string | undefined;
  const at = name.indexOf("@");
  if (at >= 0) {
    digest = name.slice(at + 1);
    name = name.slice(0, at);
  }
  let tag: string | undefined;
  const colon = name.lastIndexOf(":");
  if (colon > name.lastIndexOf("/")) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
  }
  return { name, tag, digest };
}

function parseDocker(ref: string, body: string): ImageReference {
  if (!body.startsWith("//")) throw invalid(ref, "docker references start with docker://");
  const rest = body.slice(2);
  const { name, tag, digest } = splitNameTagDigest(rest);
  if (tag !== undefined && digest !== undefined) throw invalid(ref, "give a tag or a digest, not both");
  if (digest !== undefined && !isDigest(digest))
    throw invalid(ref, `not a sha256 digest: ${JSON.stringify(digest)}`);
  if (tag !== undefined && !TAG_RE.test(tag)) {
    throw invalid(ref, `tag ${JSON.stringify(tag)} must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`);
  }
  const slash = name.indexOf("/");
  const first = slash >= 0 ? name.slice(0, slash) : "";
  let registry: string;
  let repository: string;
  if (
    slash >= 0 &&
    (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))
  ) {
    registry = first;
    repository = name.slice(slash + 1);
    const problem = hostProblem(registry);
    if (problem) throw invalid(ref, problem);
  } else {
    registry = "docker.io";
    repository = name;
  }
  if (registry === "docker.io" || registry === "index.docker.io") {
    registry = DOCKER_HUB_REGISTRY;
    if (!repository.includes("/")) repository = `library/${repository}`;
  }
  const problem = repositoryProblem(repository);
  if (problem) throw invalid(ref, problem);
  if (digest !== undefined) return { transport: "docker", registry, repository, digest: digest as Digest };
  return { transport: "docker", registry, repository, tag: tag ?? DEFAULT_TAG };
}

/**
 * Throws INVALID_ARGUMENT unless `name` is a store repository: a distribution
 * repository path, optionally behind a registry host (`127.0.0.1:5000/ci/base`).
 */
export function checkStoreRepository(name: string, what = "repository"): string {
  const slash = name.indexOf("/");
  const first = slash >= 0 ? name.slice(0, slash) : "";
  let path = name;
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    const problem = hostProblem(first);
    if (problem) throw new RootstockError("INVALID_ARGUMENT", `${what} ${JSON.stringify(name)}: ${problem}`);
    path = name.slice(slash + 1);
  }
  const problem = repositoryProblem(path);
  if (problem) throw new RootstockError("INVALID_ARGUMENT", `${what} ${JSON.stringify(name)}: ${problem}`);
  return name;
}

function parseStore(ref: string, body: string): ImageReference {
  const { name, tag, digest } = splitNameTagDigest(body);
  if (digest !== undefined) throw invalid(ref, "store references name a tag, not a digest");
  if (tag !== undefined && !TAG_RE.test(tag)) {
    throw invalid(ref, `tag ${JSON.stringify(tag)} must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}`);
  }
  // A store repository may carry a host-like first component (mirrors of registry names).
  const slash = name.indexOf("/");
  const first = slash >= 0 ? name.slice(0, slash) : "";
  let path = name;
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    const problem = hostProblem(first);
    if (problem) throw invalid(ref, problem);
    path = name.slice(slash + 1);
  }
  const problem = repositoryProblem(path);
  if (problem) throw invalid(ref, problem);
  return { transport: "store", repository: name, tag: tag ?? DEFAULT_TAG };
}

function parseOci(ref: string, body: string): ImageReference {
  const colon = body.indexOf(":");
  const path = colon >= 0 ? body.slice(0, colon) : body;
  const tag = colon >= 0 ? body.slice(colon + 1) : undefined;
  if (path === "") throw invalid(ref, "missing layout path");
  if (path.includes("\0")) throw invalid(ref, "path contains a NUL byte");
  if (tag !== undefined) {
    if (!OCI_REF_NAME_RE.test(tag))
      throw invalid(ref, `tag ${JSON.stringify(tag)} is not a valid OCI ref name`);
    return { transport: "oci", path, tag };
  }
  return { transport: "oci", path };
}

export function parseReference(ref: string): ImageReference {
  const colon = ref.indexOf(":");
  if (colon < 0) throw invalid(ref, "missing transport (oci:, docker://, store:)");
  const transport = ref.slice(0, colon);
  const body = ref.slice(colon + 1);
  switch (transport) {
    case "oci":
      return parseOci(ref, body);
    case "docker":
      return parseDocker(ref, body);
    case "store":
      return parseStore(ref, body);
    default:
      throw invalid(
        ref,
        `unknown transport ${JSON.stringify(transport)} (expected oci:, docker:// or store:)`,
      );
  }
}

/** The canonical string for a reference (parseReference(formatReference(r)) equals r). */
export function formatReference(ref: ImageReference): string {
  switch (ref.transport) {
    case "oci":
      return ref.tag !== undefined ? `oci:${ref.path}:${ref.tag}` : `oci:${ref.path}`;
    case "docker": {
      const host = ref.registry === DOCKER_HUB_REGISTRY ? "docker.io" : ref.registry;
      const suffix = ref.digest !== undefined ? `@${ref.digest}` : `:${ref.tag ?? DEFAULT_TAG}`;
      return `docker://${host}/${ref.repository}${suffix}`;
    }
    case "store":
      return `store:${ref.repository}:${ref.tag}`;
  }
}
