/**
 * The bytes of the documents we write. A document's digest is the digest of exactly
 * these bytes, so serialisation must be deterministic: keys in the order the object
 * was built (callers build documents in spec order), no whitespace, no undefined
 * fields, UTF-8.
 */
import { RootstockError } from "../errors.js";
import { type Digest, sha256 } from "./digest.js";
import { MediaType } from "./mediatypes.js";
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from "./types.js";

export function canonicalJson(value: unknown): Uint8Array {
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw new RootstockError("INTERNAL", `canonical JSON: non-finite number ${v}`);
    }
    if (typeof v === "bigint") throw new RootstockError("INTERNAL", "canonical JSON: bigint");
    return v;
  });
  return Buffer.from(text, "utf8");
}

/** A descriptor naming `bytes`, with optional extra fields (annotations, platform, ...). */
export function descriptorFor(
  mediaType: string,
  bytes: Uint8Array,
  extra: Omit<Partial<Descriptor>, "mediaType" | "digest" | "size"> = {},
): Descriptor {
  return { mediaType, digest: sha256(bytes), size: bytes.length, ...extra };
}

export interface SerialisedDocument {
  bytes: Uint8Array;
  descriptor: Descriptor;
  digest: Digest;
}

function serialise(mediaType: string, doc: unknown): SerialisedDocument {
  const bytes = canonicalJson(doc);
  const descriptor = descriptorFor(mediaType, bytes);
  return { bytes, descriptor, digest: descriptor.digest };
}

export function serialiseManifest(manifest: ImageManifest): SerialisedDocument {
  return serialise(manifest.mediaType ?? MediaType.OciManifest, manifest);
}

export function serialiseIndex(index: ImageIndex): SerialisedDocument {
  return serialise(index.mediaType ?? MediaType.OciIndex, index);
}

export function serialiseConfig(
  config: ImageConfig,
  mediaType: string = MediaType.OciConfig,
): SerialisedDocument {
  return serialise(mediaType, config);
}
