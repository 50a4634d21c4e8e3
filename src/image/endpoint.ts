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
import type { BlobSink, BlobSource } from "../oci/blobs.js";
import type { Digest } from "../oci/digest.js";
import { formatReference, type ImageReference } from "../oci/reference.js";
import type { Descriptor } from "../oci/types.js";
import type { ProgressSink } from "../progress.js";
import type { RegistryOptions } from "../remote/client.js";

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
      // Loaded only for registries: the http client is ~50 ms of modules to load.
      const { registryClient, RegistryEndpoint } = await import("./registry-endpoint.js");
      const client = registryClient(ref.registry, opts.registry);
      return new RegistryEndpoint(formatReference(ref), client, client.repository(ref.repository), {
        tag: ref.tag,
        digest: ref.digest,
      });
    }
  }
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
