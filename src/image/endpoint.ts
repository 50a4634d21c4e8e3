/**
 * An image endpoint is wherever an image can be read from or written to: the local
 * store, an OCI layout directory or a registry repository. Each is opened from a
 * reference (`store:`, `oci:`, `docker://`) into the same small interface, so copy,
 * inspect and export never ask which one they hold.
 */
import { open } from "node:fs/promises";
import { ContentStore } from "../cas/store.js";
import { RootstockError } from "../errors.js";
import { OciLayout } from "../layout/layout.js";
import type { BlobRef, BlobSink, BlobSource, PutResult } from "../oci/blobs.js";
import { lendingThrough } from "../oci/borrow.js";
import { type Digest, sha256, verifyDigest } from "../oci/digest.js";
import { isIndexMediaType, isManifestMediaType } from "../oci/mediatypes.js";
import { formatReference, type ImageReference } from "../oci/reference.js";
import type { Descriptor } from "../oci/types.js";
import type { ProgressSink } from "../progress.js";
import { RegistryClient, type RegistryOptions } from "../remote/client.js";
import type { Repository } from "../remote/repository.js";

export interface Endpoint extends BlobSource, BlobSink {
  /** The reference as the user would write it, for messages. */
  readonly name: string;
  /** The tag or digest the reference names (undefined: none given). */
  readonly target: { tag?: string; digest?: Digest };
  /** The root descriptor the reference names (manifest or index). */
  resolveRoot(): Promise<Descriptor>;
  /** Stores a manifest or index (children already present) and points `tag` at it when given. */
  putManifest(descriptor: Descriptor, bytes: Uint8Array, tag?: string): Promise<void>;
  /**
   * Copies one blob from `source` the cheapest way this endpoint knows (a registry
   * mounts from another repository on the same host, and re-opens the source on a
   * retry); verified on the way in. Says what it did.
   */
  putFrom(
    source: Endpoint,
    blob: { digest: Digest; size: number },
    progress?: ProgressSink,
  ): Promise<Transfer>;
  /**
   * Bytes [start, end) of a blob, unverified (the caller checks what it reads against
   * digests it trusts, as zstd:chunked readers do).
   */
  readRange(digest: Digest, start: number, end: number): Promise<Uint8Array>;
  /**
   * Runs a group of writes (blobs, then the manifest and tag that reference them) so a
   * concurrent gc cannot collect the first before the last lands (the store's lease).
   */
  withWrites<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type Transfer = "exists" | "mounted" | "uploaded";

export interface EndpointOptions {
  /** The local store directory for `store:` references. */
  storeDir: string;
  /** Registry options (insecure, auth, concurrency) for `docker://` references. */
  registry?: RegistryOptions;
  /** Create a missing layout directory (destinations). */
  create?: boolean;
}

export async function openEndpoint(ref: ImageReference, opts: EndpointOptions): Promise<Endpoint> {
  switch (ref.transport) {
    case "store": {
      const store = await ContentStore.open(opts.storeDir);
      return repositoryEndpoint(
        formatReference(ref),
        store.repository(ref.repository),
        { tag: ref.tag },
        (d) => store.blobPath(d),
        (fn) => store.withLease(fn),
      );
    }
    case "oci": {
      const layout = await OciLayout.open(ref.path, { create: opts.create === true });
      return repositoryEndpoint(
        formatReference(ref),
        layout,
        { tag: ref.tag },
        (d) => layout.blobPath(d),
        (fn) => fn(),
      );
    }
    case "docker": {
      const client = registryClient(ref.registry, opts.registry);
      return new RegistryEndpoint(formatReference(ref), client, client.repository(ref.repository), {
        tag: ref.tag,
        digest: ref.digest,
      });
    }
  }
}

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

type TaggedRepository = BlobSource &
  BlobSink & {
    resolve(tag: string): Promise<Descriptor>;
    tags(): Promise<string[]>;
    setTag(tag: string, descriptor: Descriptor): Promise<void>;
  };

function repositoryEndpoint(
  name: string,
  repo: TaggedRepository,
  target: { tag?: string; digest?: Digest },
  blobPath: (digest: Digest) => string,
  withWrites: <T>(fn: () => Promise<T>) => Promise<T>,
): Endpoint {
  return {
    name,
    target,
    has: (d) => repo.has(d),
    size: (d) => repo.size(d),
    open: (b) => repo.open(b),
    read: (b, max) => repo.read(b, max),
    put: (s, e) => repo.put(s, e),
    async resolveRoot() {
      if (target.tag) return repo.resolve(target.tag);
      const tags = await repo.tags();
      if (tags.length === 1) return repo.resolve(tags[0]!);
      throw new RootstockError(
        tags.length === 0 ? "NOT_FOUND" : "INVALID_ARGUMENT",
        tags.length === 0 ? `${name}: no images` : `${name}: several tags, name one of: ${tags.join(", ")}`,
      );
    },
    async putManifest(descriptor, bytes, tag) {
      await repo.put(bytes, { digest: descriptor.digest, size: descriptor.size });
      if (tag) await repo.setTag(tag, descriptor);
    },
    async putFrom(source, blob) {
      if (await repo.has(blob.digest)) return "exists";
      const put = await repo.put(await source.open(blob), blob);
      return put.existed ? "exists" : "uploaded";
    },
    withWrites,
    async readRange(digest, start, end) {
      const handle = await open(blobPath(digest)).catch((err: NodeJS.ErrnoException) => {
        throw err.code === "ENOENT"
          ? new RootstockError("NOT_FOUND", `${name}: blob ${digest} not found`)
          : err;
      });
      try {
        const buf = Buffer.alloc(Math.max(0, end - start));
        const { bytesRead } = await handle.read(buf, 0, buf.length, start);
        if (bytesRead !== buf.length) {
          throw new RootstockError("SIZE_MISMATCH", `${name}: blob ${digest} ends before byte ${end}`);
        }
        return buf;
      } finally {
        await handle.close();
      }
    },
    async close() {},
  };
}

/** A registry repository seen as an endpoint; manifests go through the manifest API. */
class RegistryEndpoint implements Endpoint {
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
