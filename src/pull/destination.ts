/**
 * The store name a pulled image gets when the user names none: a registry image
 * keeps its full name (`docker://127.0.0.1:5000/ci/debian:v1` → `127.0.0.1:5000/ci/debian:v1`,
 * Docker Hub as `docker.io/library/debian`), so images of different registries never
 * collide; a digest reference is tagged `sha256-<hex>`; a layout image is named after
 * its directory (lower-cased, other characters as `-`) with its tag or `latest`.
 */
import { basename, resolve } from "node:path";
import { RootstockError } from "../errors.js";
import {
  checkStoreRepository,
  checkTag,
  DOCKER_HUB_REGISTRY,
  type ImageReference,
} from "../oci/reference.js";

export function defaultDestination(ref: ImageReference): { repository: string; tag: string } {
  switch (ref.transport) {
    case "docker": {
      const host = ref.registry === DOCKER_HUB_REGISTRY ? "docker.io" : ref.registry;
      const tag = ref.digest ? `sha256-${ref.digest.slice(7)}` : (ref.tag ?? "latest");
      return { repository: checkStoreRepository(`${host}/${ref.repository}`), tag: checkTag(tag) };
    }
    case "oci": {
      const name = basename(resolve(ref.path))
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, "-")
        .replace(/^-+|-+$/g, "");
      const tag = ref.tag && /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(ref.tag) ? ref.tag : "latest";
      return { repository: checkStoreRepository(name || "image"), tag };
    }
    case "store":
      throw new RootstockError("INVALID_ARGUMENT", "store: references are already in the store");
  }
}
