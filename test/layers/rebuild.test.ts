/**
 * A layer tar rebuilt from its tar-split and the store's file objects: exact for
 * files of every size (through one reused read buffer or fresh ones), and a file
 * object that is longer, shorter or altered is caught, naming the file.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { appendFile, chmod, readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { ContentStore } from "../../src/cas/store.js";
import { crc64 } from "../../src/compress/crc64.js";
import { TARSPLIT_FILE, TARSPLIT_SEGMENT, type TarSplitEntry } from "../../src/compress/tarsplit.js";
import type { TocEntry } from "../../src/compress/toc.js";
import { assembleFromStore } from "../../src/layers/rebuild.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { blockPadding, END_OF_ARCHIVE, encodeHeader } from "../../src/tar/index.js";
import { regularFileHeader } from "../helpers/tar.js";
import { withTempDir } from "../helpers/tmp.js";

const MB = 1024 * 1024;

/** The tar of `contents`, its tar-split and TOC-form entries, and the store holding the files. */
async function layerOf(store: ContentStore, contents: Uint8Array[]) {
  const tarParts: Uint8Array[] = [];
  const tarSplit: TarSplitEntry[] = [];
  const entries: TocEntry[] = [];
  const paths: string[] = [];
  let pad = new Uint8Array(0);
  for (const [i, content] of contents.entries()) {
    const name = `f${i}`;
    const header = encodeHeader(regularFileHeader(name, content.length));
    tarParts.push(pad, header, content);
    tarSplit.push({ type: TARSPLIT_SEGMENT, payload: Buffer.concat([pad, header]), position: 0 });
    tarSplit.push({ type: TARSPLIT_FILE, name, size: content.length, crc: crc64(content), position: 0 });
    const put = await store.putFile(content);
    entries.push({ type: "reg", name, size: content.length, digest: put.digest });
    paths.push(store.filePath(put.digest));
    pad = new Uint8Array(blockPadding(content.length));
  }
  tarParts.push(pad, END_OF_ARCHIVE);
  tarSplit.push({ type: TARSPLIT_SEGMENT, payload: Buffer.concat([pad, END_OF_ARCHIVE]), position: 0 });
  const tar = Buffer.concat(tarParts);
  return { tar, diffId: sha256(tar) as Digest, tarSplit, entries, paths };
}

async function rebuild(
  store: ContentStore,
  layer: Awaited<ReturnType<typeof layerOf>>,
  reuseBuffer: boolean,
): Promise<Buffer> {
  const out: Buffer[] = [];
  const chunks = assembleFromStore(store, layer.tarSplit, layer.entries, layer.diffId, "test layer", {
    reuseBuffer,
  });
  for await (const chunk of chunks) out.push(Buffer.from(chunk)); // a copy: with reuseBuffer the chunk is a view
  return Buffer.concat(out);
}

test("rebuilds the exact tar for files of every size, with a reused read buffer or without", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(join(dir, "store"));
    const sizes = [1, 511, 4096, MB - 1, MB, MB + 1, 3.5 * MB, 2 * MB];
    const layer = await layerOf(
      store,
      sizes.map((n) => randomBytes(Math.floor(n))),
    );
    assert.ok((await rebuild(store, layer, true)).equals(layer.tar));
    assert.ok((await rebuild(store, layer, false)).equals(layer.tar));
  });
});

test("a file object longer, shorter or altered fails the rebuild, naming the file", async () => {
  for (const [damage, expected] of [
    ["longer", /tar-split file "f1": expected 3670016 bytes, got more/],
    ["shorter", /tar-split file "f1": expected 3670016 bytes, got 3000000/],
    ["altered", /tar-split file "f1": file integrity checksum \(CRC-64\) failed/],
  ] as const) {
    for (const reuseBuffer of [true, false]) {
      await withTempDir(async (dir) => {
        const store = await ContentStore.open(join(dir, "store"));
        const layer = await layerOf(store, [randomBytes(100), randomBytes(3.5 * MB), randomBytes(10)]);
        const path = layer.paths[1] as string;
        await chmod(path, 0o644);
        if (damage === "longer") await appendFile(path, "x");
        else if (damage === "shorter") await truncate(path, 3_000_000);
        else {
          const bytes = await readFile(path);
          bytes[bytes.length - 1] = (bytes.at(-1) as number) ^ 0xff; // one byte flipped
          await writeFile(path, bytes);
        }
        await assert.rejects(
          rebuild(store, layer, reuseBuffer),
          expected,
          `${damage}, reuseBuffer ${reuseBuffer}`,
        );
      });
    }
  }
});
