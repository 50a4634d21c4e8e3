/**
 * A registry repository as an image endpoint (see endpoint.ts), and the client
 * factory every registry user shares. Its own module so that commands working on the
 * store or a layout never load the http client.
 */

import { RootstockError } from "../errors.js";
import type { BlobRef, PutResult } from "../oci/blobs.js";
import { lendingThrough } from "../oci/borrow.js";
import { type Digest, sha256, verifyDigest } from "../oci/digest.js";
import { isIndexMediaType, isManifestMediaType } from "../oci/mediatypes.js";
import type { Descriptor } from "../oci/types.js";
import type { ProgressSink } from "../progress.js";
import { RegistryClient, type RegistryOptions } from "../remote/client.js";
import type { Repository } from "../remote/repository.js";
import type { Endpoint, Transfer } from "./endpoint.js";

/** A client for `host`; like Docker, a loopback registry may speak plain http unless told otherwise. */
export function registryClient(host: string, options: RegistryOptions = {}): RegistryClient {
  const insecure = options.insecure ?? (isLoopbackHost(host) ? true : undefined);
  return new RegistryClient(host, { ...options, insecure });
}

/** 127.0.0.0/8, ::1 and localhost, with or without a port. */
export function isLoopbackHost(host: string): boolean {
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "");
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** A registry repository seen as an endpoint; manifests go through the manifest API. */
export class RegistryEndpoint implements Endpoint {
  /** Digests known to be manifests (read through /manifests/ even without a media type). */
  private readonly manifests = new Set<string>();

  constructor(
    readonly name: string,
    private readonly client: RegistryClient,
    readonly repo: Repository,
    readonly target: { tag?: string; digest?: Digest },
  ) {}

  async has(digest: Digest): Promise<boolean> {
    return (await this.repo.headBlob(digest)) !== undefined;
  }

  async size(digest: Digest): Promise<number> {
    const head = await this.repo.headBlob(digest);
    if (!head) throw new RootstockError("NOT_FOUND", `${this.name}: blob ${digest} not found`);
    return head.size;
  }

  async open(blob: BlobRef): Promise<AsyncIterable<Uint8Array>> {
    // Manifests live behind /manifests/, not /blobs/: a copy reads them through read().
    return this.repo.openBlob(blob.digest, { size: blob.size });
  }

  read(blob: BlobRef, maxBytes = 16 * 1024 * 1024): Promise<Uint8Array> {
    // Callers pass descriptors, whose media type says whether it is a manifest.
    const manifest =
      isManifestMediaType(blob.mediaType) ||
      isIndexMediaType(blob.mediaType) ||
      this.manifests.has(blob.digest);
    return this.repo.readDocument(blob, { manifest, maxBytes });
  }

  async put(source: AsyncIterable<Uint8Array> | Uint8Array, expected?: Partial<BlobRef>): Promise<PutResult> {
    if (source instanceof Uint8Array) {
      const digest = sha256(source);
      if (expected?.digest !== undefined || expected?.size !== undefined) {
        verifyDigest(
          { digest, size: source.length },
          { digest: expected.digest ?? digest, size: expected.size },
          `${this.name}: blob`,
        );
      }
      const result = await this.repo.pushBlob(source, { digest, size: source.length });
      return { digest, size: source.length, existed: result === "exists" };
    }
    if (expected?.digest !== undefined && expected.size !== undefined) {
      const { digest, size } = expected as { digest: Digest; size: number };
      // A stream can be read once: a retry of the upload cannot re-open it.
      const result = await this.repo.pushBlob(() => source, { digest, size });
      return { digest, size, existed: result === "exists" };
    }
    // Digest unknown until the end (a layer being encoded): streamed in PATCH chunks,
    // hashed on the way, committed under the digest it turned out to have.
    const pushed = await this.repo.pushStream(source, {
      ...(expected?.digest ? { digest: expected.digest } : {}),
      ...(expected?.size !== undefined ? { size: expected.size } : {}),
    });
    return { ...pushed, existed: false };
  }

  async putFrom(
    source: Endpoint,
    blob: { digest: Digest; size: number },
    progress?: ProgressSink,
  ): Promise<Transfer> {
    const mountFrom =
      source instanceof RegistryEndpoint && source.host === this.host ? [source.repo.name] : [];
    return this.repo.pushBlob(
      () => lendingThrough(() => source.open(blob)),
      // Every endpoint's open() verifies the blob's digest at its end.
      { ...blob, mountFrom, contentVerified: true, ...(progress ? { progress } : {}) },
    );
  }

  async readRange(digest: Digest, start: number, end: number): Promise<Uint8Array> {
    const buf = Buffer.alloc(end - start);
    for await (const part of this.repo.getBlobRanges(digest, [{ offset: start, length: end - start }])) {
      buf.set(part.bytes, part.range.offset - start);
    }
    return buf;
  }

  withWrites<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  get host(): string {
    return this.client.host;
  }

  async resolveRoot(): Promise<Descriptor> {
    const ref = this.target.digest ?? this.target.tag ?? "latest";
    const m = await this.repo.getManifest(ref);
    this.manifests.add(m.digest);
    return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
  }

  async putManifest(descriptor: Descriptor, bytes: Uint8Array, tag?: string): Promise<void> {
    await this.repo.putManifest(tag ?? descriptor.digest, bytes, descriptor.mediaType);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
