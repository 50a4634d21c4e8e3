/**
 * Small real images for the remote tests: gzip'd tar layers made by GNU tar from
 * files written in the test, a config whose diff_ids match, an OCI manifest.
 */
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { acceptBorrowedChunks } from "../../src/oci/borrow.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";

const run = promisify(execFile);

export interface TestBlob {
  digest: Digest;
  size: number;
  bytes: Uint8Array;
  mediaType: string;
}

export interface TestImage {
  config: TestBlob;
  layers: TestBlob[];
  manifest: TestBlob;
}

export function blobOf(bytes: Uint8Array, mediaType: string): TestBlob {
  return { digest: sha256(bytes), size: bytes.length, bytes, mediaType };
}

/** One gzip'd tar layer per entry of `layers` (file name → content), built in `dir`. */
export async function makeImage(
  dir: string,
  layers: Record<string, string | Uint8Array>[],
): Promise<TestImage> {
  const layerBlobs: TestBlob[] = [];
  const diffIds: Digest[] = [];
  for (const [i, files] of layers.entries()) {
    const root = join(dir, `layer${i}`);
    await mkdir(root, { recursive: true });
    for (const [name, content] of Object.entries(files)) await writeFile(join(root, name), content);
    const tarPath = join(dir, `layer${i}.tar`);
    await run("tar", [
      "--sort=name",
      "--mtime=@0",
      "--owner=0",
      "--group=0",
      "-cf",
      tarPath,
      "-C",
      root,
      ".",
    ]);
    const tar = await readFile(tarPath);
    diffIds.push(sha256(tar));
    layerBlobs.push(blobOf(gzipSync(tar, { level: 1 }), MediaType.OciLayerGzip));
  }
  const config = blobOf(
    Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: {},
        rootfs: { type: "layers", diff_ids: diffIds },
      }),
    ),
    MediaType.OciConfig,
  );
  const manifest = blobOf(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
        layers: layerBlobs.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      }),
    ),
    MediaType.OciManifest,
  );
  return { config, layers: layerBlobs, manifest };
}

/** Collects an async iterable of bytes. */
export async function readAll(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** readAll as a consumer that accepts borrowed chunks (oci/borrow.ts): each is copied before the next read. */
export function readAllBorrowed(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  acceptBorrowedChunks(source);
  return readAll(source);
}
