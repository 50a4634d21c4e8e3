/**
 * Where a pull reads from: a registry repository (`docker://`) or an OCI layout
 * (`oci:`), behind one small interface with ranged reads. Manifests and configs are
 * read whole and verified; layer bytes come as a verified stream or as ranges
 * (ranges cannot be verified by themselves: the pull verifies what it decodes).
 */
import { open } from "node:fs/promises";
import { RootstockError } from "../errors.js";
import { registryClient } from "../image/registry-endpoint.js";
import { OciLayout } from "../layout/layout.js";
import type { BlobRef } from "../oci/blobs.js";
import type { Digest } from "../oci/digest.js";
import { isIndexMediaType, isManifestMediaType } from "../oci/mediatypes.js";
import { formatReference, type ImageReference } from "../oci/reference.js";
import type { Descriptor } from "../oci/types.js";
import type { RegistryOptions } from "../remote/client.js";
import type { Repository } from "../remote/repository.js";

export interface PullSource {
  /** The reference as the user wrote it (for messages). */
  readonly name: string;
  /** The manifest or index the reference names. */
  resolveRoot(): Promise<Descriptor>;
  /** A small document (manifest, index, config), verified. */
  read(blob: BlobRef): Promise<Uint8Array>;
  /** A whole blob as a verified stream. */
  open(blob: BlobRef): Promise<AsyncIterable<Uint8Array>>;
  /** Bytes [start, end) of a blob, unverified. */
  readRange(digest: Digest, start: number, end: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

const MAX_DOCUMENT = 16 * 1024 * 1024;

/** Opens a `docker://` or `oci:` reference as a pull source. */
export async function openPullSource(
  ref: ImageReference,
  opts: { registry?: RegistryOptions } = {},
): Promise<PullSource> {
  switch (ref.transport) {
    case "docker": {
      const client = registryClient(ref.registry, opts.registry);
      return registrySource(
        formatReference(ref),
        client.repository(ref.repository),
        ref.digest ?? ref.tag ?? "latest",
        () => client.close(),
      );
    }
    case "oci":
      return layoutSource(formatReference(ref), await OciLayout.open(ref.path), ref.tag);
    case "store":
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `${formatReference(ref)}: already in the store; pull reads docker:// or oci:`,
      );
  }
}

export function registrySource(
  name: string,
  repo: Repository,
  target: string,
  close: () => Promise<void>,
): PullSource {
  let rootDigest: string | undefined;
  return {
    name,
    async resolveRoot() {
      const m = await repo.getManifest(target);
      rootDigest = m.digest;
      return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
    },
    read(blob) {
      // The root and what is typed as a manifest or index; everything else is a blob.
      const manifest =
        isManifestMediaType(blob.mediaType) || isIndexMediaType(blob.mediaType) || blob.digest === rootDigest;
      return repo.readDocument(blob, { manifest, maxBytes: MAX_DOCUMENT });
    },
    async open(blob) {
      return repo.openBlob(blob.digest, blob.size !== undefined ? { size: blob.size } : {});
    },
    async readRange(digest, start, end) {
      const buf = Buffer.allocUnsafe(end - start);
      let got = 0;
      for await (const part of repo.getBlobRanges(digest, [{ offset: start, length: end - start }], {
        mergeGap: 0,
        maxRangesPerRequest: 1,
      })) {
        buf.set(part.bytes, part.range.offset - start);
        got += part.bytes.length;
      }
      if (got !== end - start)
        throw new RootstockError(
          "SIZE_MISMATCH",
          `${name}: blob ${digest}: got ${got} of bytes ${start}-${end - 1}`,
        );
      return buf;
    },
    close,
  };
}

export function layoutSource(name: string, layout: OciLayout, tag: string | undefined): PullSource {
  return {
    name,
    resolveRoot: () => layout.resolve(tag),
    read: (blob) => layout.read(blob, MAX_DOCUMENT),
    open: (blob) => layout.open(blob),
    async readRange(digest, start, end) {
      const handle = await open(layout.blobPath(digest)).catch((err: NodeJS.ErrnoException) => {
        throw err.code === "ENOENT"
          ? new RootstockError("NOT_FOUND", `${name}: blob ${digest} not found`)
          : err;
      });
      try {
        const buf = Buffer.allocUnsafe(Math.max(0, end - start));
        let got = 0;
        while (got < buf.length) {
          const { bytesRead } = await handle.read(buf, got, buf.length - got, start + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got !== buf.length)
          throw new RootstockError("SIZE_MISMATCH", `${name}: blob ${digest} ends before byte ${end}`);
        return buf;
      } finally {
        await handle.close();
      }
    },
    async close() {},
  };
}
