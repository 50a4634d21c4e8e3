/**
 * Reading a root filesystem archive whatever its wrapping: tar or cpio newc, plain,
 * gzip or zstd, told apart by magic bytes (never by file name). Used by `digest`
 * and by tarball overlays.
 */
import { open } from "node:fs/promises";
import { createGunzip } from "node:zlib";
import { ZstdStreamDecoder } from "../compress/zstd.js";
import { RootstockError } from "../errors.js";
import { readFileChunks, readTar } from "../tar/index.js";
import type { TarEntryLike } from "../tree/index.js";
import { readCpio } from "./cpio.js";

export type ArchiveKind = "tar" | "cpio";
export type ArchiveCompression = "none" | "gzip" | "zstd";

export interface ArchiveInfo {
  kind: ArchiveKind;
  compression: ArchiveCompression;
}

async function head(path: string, n: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await handle.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

function compressionOfMagic(b: Uint8Array): ArchiveCompression {
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return "gzip";
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return "zstd";
  return "none";
}

async function* gunzip(source: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<Uint8Array> {
  const z = createGunzip();
  const done = new Promise<void>((resolve, reject) => {
    z.on("end", resolve);
    z.on("error", (err) =>
      reject(new RootstockError("COMPRESSION", `${what}: gzip: ${err.message}`, { cause: err })),
    );
  });
  done.catch(() => {});
  const feed = (async () => {
    for await (const chunk of source) {
      if (z.destroyed) break; // the reader stopped early: leaving the loop closes the source
      if (!z.write(chunk))
        await new Promise<void>((resolve) => {
          const go = () => {
            z.off("drain", go);
            z.off("close", go);
            resolve();
          };
          z.on("drain", go);
          z.on("close", go);
        });
    }
    if (!z.destroyed) z.end();
  })();
  feed.catch((err) => z.destroy(err));
  try {
    for await (const chunk of z as AsyncIterable<Uint8Array>) yield chunk;
    await feed;
    await done;
  } finally {
    // A consumer that stops early (a magic-bytes peek) must not leave the feeder
    // waiting for a drain that never comes, holding the file open.
    if (!z.destroyed) z.destroy();
    await feed.catch(() => {});
  }
}

async function* unzstd(source: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<Uint8Array> {
  const d = new ZstdStreamDecoder(what, Number.MAX_SAFE_INTEGER, 1 << 20);
  const out: Uint8Array[] = [];
  for await (const chunk of source) {
    d.write(chunk, (c) => out.push(c));
    while (out.length > 0) yield out.shift()!;
  }
  d.end();
}

/** The decompressed bytes of a file, whatever its compression (by magic). */
function decompressed(source: AsyncIterable<Uint8Array>, compression: ArchiveCompression, what: string) {
  if (compression === "gzip") return gunzip(source, what);
  if (compression === "zstd") return unzstd(source, what);
  return source;
}

/** What a file holds: peeks at the magic bytes (of the decompressed stream too). */
export async function detectArchive(path: string): Promise<ArchiveInfo> {
  const compression = compressionOfMagic(await head(path, 4));
  let first: Uint8Array = new Uint8Array(0);
  if (compression === "none") first = await head(path, 6);
  else {
    for await (const chunk of decompressed(readFileChunks(path, 64 * 1024), compression, path)) {
      first = Buffer.concat([first, chunk]);
      if (first.length >= 6) break;
    }
  }
  const magic = Buffer.from(first.subarray(0, 6)).toString("latin1");
  const kind: ArchiveKind = magic === "070701" || magic === "070702" ? "cpio" : "tar";
  if (kind === "tar" && first.length === 0) {
    throw new RootstockError("INVALID_FORMAT", `${path}: empty file, not an archive`);
  }
  return { kind, compression };
}

/** The archive's entries in the tar data model (cpio read by readCpio). */
export async function readArchive(
  path: string,
): Promise<{ info: ArchiveInfo; entries: AsyncIterable<TarEntryLike> }> {
  const info = await detectArchive(path);
  const bytes = decompressed(readFileChunks(path), info.compression, path);
  return { info, entries: info.kind === "cpio" ? readCpio(bytes) : readTar(bytes) };
}
