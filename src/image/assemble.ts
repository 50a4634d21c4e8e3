/**
 * Writing a one-or-more-layer image into any endpoint: config with diff_ids, OCI
 * manifest, tag. Pure document building plus the endpoint writes, children first.
 */
import type { EncodedLayer } from "../compress/layer.js";
import { serialiseConfig, serialiseManifest } from "../oci/canonical.js";
import { MediaType } from "../oci/mediatypes.js";
import type { Platform } from "../oci/platform.js";
import type { Descriptor, History, ImageConfig, ImageManifest } from "../oci/types.js";
import type { Endpoint } from "./endpoint.js";

/** OCI architecture names for Node's `process.arch`. */
const ARCH: Record<string, string> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ia32: "386",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
  loong64: "loong64",
  mips64el: "mips64le",
};

export function hostPlatform(): Platform {
  return { os: "linux", architecture: ARCH[process.arch] ?? process.arch };
}

/** `created` from SOURCE_DATE_EPOCH when set, so the same inputs give the same config digest. */
export function reproducibleCreated(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const epoch = env.SOURCE_DATE_EPOCH;
  if (epoch === undefined || !/^\d+$/.test(epoch)) return undefined;
  return new Date(Number(epoch) * 1000).toISOString().replace(/\.000Z$/, "Z");
}

export interface ImageSpec {
  platform: Platform;
  layers: EncodedLayer[];
  /** The container config (Env, Entrypoint, Cmd, Labels, ...). */
  config?: ImageConfig["config"];
  history?: History[];
  created?: string;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
}

export interface AssembledImage {
  manifest: { descriptor: Descriptor; bytes: Uint8Array; manifest: ImageManifest };
  config: { descriptor: Descriptor; bytes: Uint8Array; config: ImageConfig };
}

/** The config and manifest documents for `spec` (pure). */
export function assembleImage(spec: ImageSpec): AssembledImage {
  const config: ImageConfig = {
    ...(spec.created ? { created: spec.created } : {}),
    architecture: spec.platform.architecture,
    os: spec.platform.os,
    ...(spec.platform.variant ? { variant: spec.platform.variant } : {}),
    ...(spec.config ? { config: spec.config } : {}),
    rootfs: { type: "layers", diff_ids: spec.layers.map((l) => l.diffId) },
    ...(spec.history ? { history: spec.history } : {}),
  };
  const configDoc = serialiseConfig(config);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configDoc.descriptor,
    layers: spec.layers.map((l) => ({
      mediaType: l.mediaType,
      digest: l.digest,
      size: l.size,
      ...(Object.keys(l.annotations).length > 0 ? { annotations: l.annotations } : {}),
    })),
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
  };
  const manifestDoc = serialiseManifest(manifest);
  return {
    manifest: { descriptor: manifestDoc.descriptor, bytes: manifestDoc.bytes, manifest },
    config: { descriptor: configDoc.descriptor, bytes: configDoc.bytes, config },
  };
}

/** Writes config then manifest (layers must already be there) and tags it. */
export async function writeImage(endpoint: Endpoint, image: AssembledImage, tag?: string): Promise<void> {
  await endpoint.put(image.config.bytes, {
    digest: image.config.descriptor.digest,
    size: image.config.descriptor.size,
  });
  await endpoint.putManifest(image.manifest.descriptor, image.manifest.bytes, tag);
}
