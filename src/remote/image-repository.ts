/**
 * A registry repository seen through oci/blobs.ts's `ImageRepository`, so the copy
 * engine moves images between the store, OCI layouts and registries alike. The
 * one impedance mismatch: a registry keeps manifests apart from blobs, while the
 * interface treats a manifest as a blob that a tag points at. So `put` stores
 * everything as a blob, reads fall back to the manifest endpoint for a digest the
 * blob store lacks, and `setTag` PUTs the manifest's bytes (its child manifests
 * first, for an index) under the tag.
 */
import { RootstockError } from "../errors.js";
import type { BlobRef, ImageRepository, PutResult } from "../oci/blobs.js";
import { type Digest, parseDigest, verifyDigest } from "../oci/digest.js";
import { isIndexMediaType } from "../oci/mediatypes.js";
import { type Descriptor, parseIndex } from "../oci/types.js";
import { RegistryError } from "./errors.js";
import type { Repository } from "./repository.js";

const DEFAULT_READ_LIMIT = 16 * 1024 * 1024;

function notFound(err: unknown): boolean {
  return err instanceof RegistryError && err.status === 404;
}

export class RemoteImageRepository implements ImageRepository {
  constructor(readonly repo: Repository) {}

  async has(digest: Digest): Promise<boolean> {
    if (await this.repo.headBlob(digest)) return true;
    return (await this.repo.headManifest(digest)) !== undefined;
  }

  async size(digest: Digest): Promise<number> {
    const blob = await this.repo.headBlob(digest);
    if (blob && blob.size >= 0) return blob.size;
    const manifest = await this.repo.headManifest(digest);
    if (manifest?.size !== undefined) return manifest.size;
    throw new RootstockError("NOT_FOUND", `${this.repo.where}@${digest}: no such blob`);
  }

  async open(blob: BlobRef): Promise<AsyncIterable<Uint8Array>> {
    parseDigest(blob.digest, `${this.repo.where}: blob`);
    // Fail as NOT_FOUND from open itself (the interface's contract), then stream.
    if (!(await this.repo.headBlob(blob.digest))) {
      const manifest = await this.readManifest(blob, DEFAULT_READ_LIMIT);
      return (async function* () {
        yield manifest;
      })();
    }
    return this.repo.openBlob(blob.digest, { size: blob.size });
  }

  async read(blob: BlobRef, maxBytes = DEFAULT_READ_LIMIT): Promise<Uint8Array> {
    const head = await this.repo.headBlob(blob.digest);
    if (!head) return this.readManifest(blob, maxBytes);
    const limit = (n: number) =>
      new RootstockError(
        "INVALID_ARGUMENT",
        `${this.repo.where}@${blob.digest}: ${n} bytes, over the ${maxBytes} byte limit`,
      );
    if (head.size > maxBytes) throw limit(head.size);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of this.repo.openBlob(blob.digest, { size: blob.size })) {
      total += chunk.length;
      if (total > maxBytes) throw limit(total);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks, total);
  }

  private async readManifest(blob: BlobRef, maxBytes: number): Promise<Uint8Array> {
    try {
      const { bytes } = await this.repo.getManifest(blob.digest);
      if (bytes.length > maxBytes) {
        throw new RootstockError(
          "INVALID_ARGUMENT",
          `${this.repo.where}@${blob.digest}: ${bytes.length} bytes, over the ${maxBytes} byte limit`,
        );
      }
      verifyDigest({ digest: blob.digest, size: bytes.length }, blob, `${this.repo.where}@${blob.digest}`);
      return bytes;
    } catch (err) {
      if (notFound(err))
        throw new RootstockError("NOT_FOUND", `${this.repo.where}@${blob.digest}: no such blob`);
      throw err;
    }
  }

  async put(
    source: AsyncIterable<Uint8Array> | Uint8Array,
    expected: Partial<BlobRef> = {},
  ): Promise<PutResult> {
    if (expected.digest) {
      const digest = parseDigest(expected.digest, `${this.repo.where}: blob to put`);
      const head = await this.repo.headBlob(digest);
      if (head && (expected.size === undefined || head.size === expected.size)) {
        if (!(source instanceof Uint8Array)) await source[Symbol.asyncIterator]().return?.();
        return { digest, size: head.size, existed: true };
      }
      const size = expected.size ?? (source instanceof Uint8Array ? source.length : undefined);
      if (size !== undefined) {
        await this.repo.pushBlob(source instanceof Uint8Array ? source : () => source, { digest, size });
        return { digest, size, existed: false };
      }
    }
    // Size or digest unknown: stream it up, hashing on the way; committed only if it matches.
    const done = await this.repo.pushStream(
      source instanceof Uint8Array
        ? (async function* () {
            yield source;
          })()
        : source,
      { digest: expected.digest, size: expected.size },
    );
    return { ...done, existed: false };
  }

  async resolve(tag: string): Promise<Descriptor> {
    const head = await this.repo.headManifest(tag);
    if (!head) {
      const tags = await this.tags().catch(() => []);
      throw new RootstockError(
        "NOT_FOUND",
        `${this.repo.where}: no tag ${JSON.stringify(tag)}; tags: ${tags.length ? tags.join(", ") : "none"}`,
      );
    }
    if (head.digest && head.mediaType && head.size !== undefined) {
      return { mediaType: head.mediaType, digest: head.digest, size: head.size };
    }
    const { bytes, mediaType, digest } = await this.repo.getManifest(tag);
    return { mediaType, digest, size: bytes.length };
  }

  async tags(): Promise<string[]> {
    try {
      return (await this.repo.listTags()).sort();
    } catch (err) {
      if (err instanceof RegistryError && err.ociCode === "NAME_UNKNOWN") return [];
      throw err;
    }
  }

  async setTag(tag: string, descriptor: Descriptor): Promise<void> {
    const bytes = await this.read(descriptor);
    if (isIndexMediaType(descriptor.mediaType)) {
      // A registry checks an index's children exist as manifests: push them by digest first.
      for (const child of parseIndex(bytes, `${this.repo.where}: ${descriptor.digest}`).manifests) {
        if (await this.repo.headManifest(child.digest)) continue;
        await this.setTag(child.digest, child);
      }
    }
    await this.repo.putManifest(tag, bytes, descriptor.mediaType);
  }

  async deleteTag(tag: string): Promise<boolean> {
    if (!(await this.repo.headManifest(tag))) return false;
    try {
      await this.repo.deleteManifestRef(tag);
      return true;
    } catch (err) {
      if (err instanceof RegistryError && [400, 405].includes(err.status)) {
        throw new RootstockError(
          "REGISTRY",
          `${this.repo.where}:${tag}: this registry cannot delete a tag alone (${err.ociCode ?? err.status}); delete its manifest by digest instead`,
          { cause: err },
        );
      }
      throw err;
    }
  }
}
