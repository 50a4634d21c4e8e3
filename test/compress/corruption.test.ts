/**
 * Damaged and hostile zstd:chunked blobs: each must be refused with a typed error
 * naming what is wrong, by the TOC reading (verifyChunkedBlob) or the full read.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { verifyChunkedBlob } from "../../src/compress/chunked-reader.js";
import {
  chunkedAnnotations,
  encodeFooterFrame,
  parseChunkedAnnotations,
  skippableFrameHeader,
} from "../../src/compress/footer.js";
import { decodeLayer, type EncodedLayer } from "../../src/compress/layer.js";
import { parseToc, serializeToc, type Toc } from "../../src/compress/toc.js";
import { zstdCompress, zstdDecompress } from "../../src/compress/zstd.js";
import { isRootstockError } from "../../src/errors.js";
import type { Digest } from "../../src/oci/digest.js";
import { withTempDir } from "../helpers/tmp.js";
import { bufferReader, encodeToBuffer, run } from "./helpers.js";

const sha = (b: Uint8Array): Digest => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function sample(dir: string, extra = ""): Promise<string> {
  const script = `
import tarfile, io, os
with tarfile.open(${JSON.stringify(join(dir, "t.tar"))}, "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, data, mode=0o644):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = mode; ti.mtime = 1700000000
        t.addfile(ti, io.BytesIO(data))
    d = tarfile.TarInfo("dir"); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.mtime = 1700000000; t.addfile(d)
    add("dir/a.txt", b"alpha " * 1000)
    add("dir/b.bin", bytes(range(256)) * 300)
    add("dir/c.txt", b"gamma\\n")
${extra}
`;
  await writeFile(join(dir, "mk.py"), script);
  await run("python3", [join(dir, "mk.py")]);
  return join(dir, "t.tar");
}

/** Rebuilds a blob around a replaced TOC, with matching annotations (an attacker who controls the manifest). */
function withToc(
  blob: Buffer,
  layer: EncodedLayer,
  edit: (toc: Toc) => void,
): { blob: Buffer; layer: EncodedLayer } {
  const pos = parseChunkedAnnotations(layer.annotations);
  assert.ok(pos?.tarSplit);
  const tocJson = Buffer.from(
    zstdDecompress(blob.subarray(pos.tocOffset, pos.tocOffset + pos.tocLength), "toc"),
  ).toString();
  const toc = parseToc(tocJson);
  edit(toc);
  const newJson = Buffer.from(serializeToc(toc));
  const zToc = zstdCompress(newJson, 3);
  const zTs = blob.subarray(pos.tarSplit.offset, pos.tarSplit.offset + pos.tarSplit.length);
  const data = blob.subarray(0, pos.tocOffset - 8);
  const tocOffset = data.length + 8;
  const tsOffset = tocOffset + zToc.length + 8;
  const values = {
    tocOffset,
    tocLength: zToc.length,
    tocUncompressedLength: newJson.length,
    tarSplitOffset: tsOffset,
    tarSplitLength: zTs.length,
    tarSplitUncompressedLength: pos.tarSplit.uncompressedLength,
  };
  const out = Buffer.concat([
    data,
    skippableFrameHeader(zToc.length),
    zToc,
    skippableFrameHeader(zTs.length),
    zTs,
    encodeFooterFrame({ ...values, manifestType: 1 }),
  ]);
  return {
    blob: out,
    layer: {
      ...layer,
      digest: sha(out),
      size: out.length,
      annotations: chunkedAnnotations({ ...values, tocDigest: sha(zToc) }, false),
    },
  };
}

async function rejects(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isRootstockError(err), `not a RootstockError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, re);
    return true;
  });
}

async function drain(it: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const _ of it) {
    // consume
  }
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

describe("zstd:chunked corruption", () => {
  it("refuses flipped bytes in a payload, the TOC and the footer", async () => {
    await withTempDir(async (dir) => {
      const { blob, layer } = await encodeToBuffer(await sample(dir), {
        compression: "zstd:chunked",
        level: 3,
      });
      await verifyChunkedBlob(bufferReader(blob), layer, layer.diffId);
      const toc = layer.toc as Toc;
      const b = toc.entries.find((e) => e.name === "dir/b.bin");
      assert.ok(b?.offset && b.endOffset);
      // Payload: flip a byte inside dir/b.bin's frame.
      const payload = Buffer.from(blob);
      const at = Math.floor((b.offset + b.endOffset) / 2);
      payload[at] = (payload[at] ?? 0) ^ 0x55;
      await rejects(
        verifyChunkedBlob(bufferReader(payload), layer, layer.diffId),
        "COMPRESSION",
        /dir\/b\.bin/,
      ).catch(async () =>
        rejects(
          verifyChunkedBlob(bufferReader(payload), layer, layer.diffId),
          "DIGEST_MISMATCH",
          /dir\/b\.bin/,
        ),
      );
      await assert.rejects(drain(decodeLayer(once(payload), layer, layer.diffId)), (e: unknown) =>
        isRootstockError(e, "COMPRESSION", "DIGEST_MISMATCH"),
      );
      // TOC: flip a byte of the compressed TOC.
      const pos = parseChunkedAnnotations(layer.annotations);
      assert.ok(pos);
      const tocFlip = Buffer.from(blob);
      const t = pos.tocOffset + 10;
      tocFlip[t] = (tocFlip[t] ?? 0) ^ 1;
      await rejects(
        verifyChunkedBlob(bufferReader(tocFlip), layer, layer.diffId),
        "DIGEST_MISMATCH",
        /TOC.*manifest-checksum/,
      );
      // Footer: never trusted by the TOC reading, but the blob digest catches it on a full read.
      const footFlip = Buffer.from(blob);
      const f = footFlip.length - 3;
      footFlip[f] = (footFlip[f] ?? 0) ^ 1;
      await rejects(
        drain(decodeLayer(once(footFlip), layer, layer.diffId)),
        "DIGEST_MISMATCH",
        /blob hashes to/,
      );
      // Without annotations, a damaged footer means no zstd:chunked metadata is found.
      const { readChunkedMetadata } = await import("../../src/compress/chunked-reader.js");
      assert.ok(await readChunkedMetadata(bufferReader(blob), { size: blob.length }, { allowFooter: true }));
      assert.equal(
        await readChunkedMetadata(bufferReader(footFlip), { size: blob.length }, { allowFooter: true }),
        undefined,
      );
      // Wrong diff_id.
      await rejects(
        verifyChunkedBlob(bufferReader(blob), layer, sha(Buffer.from("x"))),
        "DIGEST_MISMATCH",
        /diff_id/,
      );
    });
  });

  it("refuses hostile TOCs even when the manifest vouches for them", async () => {
    await withTempDir(async (dir) => {
      const { blob, layer } = await encodeToBuffer(await sample(dir), {
        compression: "zstd:chunked",
        level: 3,
      });
      const cases: Array<[string, (toc: Toc) => void, string, RegExp]> = [
        [
          "offset past the end",
          (toc) => {
            const e = toc.entries.find((x) => x.name === "dir/c.txt");
            if (e) {
              e.offset = blob.length + 100;
              e.endOffset = blob.length + 200;
            }
          },
          "CHUNKED_FORMAT",
          /dir\/c\.txt.*past the data/,
        ],
        [
          "mode differs from the tar-split",
          (toc) => {
            const e = toc.entries.find((x) => x.name === "dir/a.txt");
            if (e) e.mode = 0o4755;
          },
          "CHUNKED_FORMAT",
          /dir\/a\.txt.*mode differs/,
        ],
        [
          "fractional modtime the tar lacks",
          (toc) => {
            const e = toc.entries.find((x) => x.name === "dir/");
            if (e) e.modtime = { sec: 1700000000, nsec: 5 };
          },
          "CHUNKED_FORMAT",
          /"dir\/".*modtime differs/,
        ],
        [
          "entry missing",
          (toc) => {
            toc.entries = toc.entries.filter((x) => x.name !== "dir/");
          },
          "CHUNKED_FORMAT",
          /"dir\/" is missing from the TOC/,
        ],
        [
          "wrong file digest",
          (toc) => {
            const e = toc.entries.find((x) => x.name === "dir/a.txt");
            if (e) e.digest = sha(Buffer.from("other"));
          },
          "DIGEST_MISMATCH",
          /dir\/a\.txt/,
        ],
        [
          "duplicate names",
          (toc) => {
            const e = toc.entries.find((x) => x.name === "dir/c.txt");
            if (e) e.name = "dir/a.txt";
          },
          "CHUNKED_FORMAT",
          /dir\/a\.txt.*duplicate/,
        ],
        [
          "tar-split digest swapped",
          (toc) => {
            toc.tarSplitDigest = sha(Buffer.from("nope"));
          },
          "DIGEST_MISMATCH",
          /tar-split/,
        ],
      ];
      for (const [label, edit, code, re] of cases) {
        const bad = withToc(blob, layer, edit);
        await rejects(verifyChunkedBlob(bufferReader(bad.blob), bad.layer, layer.diffId), code, re).catch(
          (err) => {
            throw new Error(`${label}: ${(err as Error).message}`);
          },
        );
      }
      // The same instant written with another zone offset is accepted.
      const zoned = withToc(blob, layer, () => {});
      const json = Buffer.from(serializeToc(layer.toc as Toc))
        .toString()
        .replace('"modtime":"2023-11-14T22:13:20Z"', '"modtime":"2023-11-15T00:13:20+02:00"');
      assert.equal(parseToc(json).entries[0]?.modtime?.sec, 1700000000);
      await verifyChunkedBlob(bufferReader(zoned.blob), zoned.layer, layer.diffId);
    });
  });

  it("refuses tars with duplicate paths or unsupported types at encode time", async () => {
    await withTempDir(async (dir) => {
      const dup = await sample(dir, `    add("dir/./a.txt", b"again")`);
      await assert.rejects(
        encodeToBuffer(dup, { compression: "zstd:chunked" }),
        (e: unknown) =>
          isRootstockError(e, "CHUNKED_FORMAT") &&
          /duplicate path.*dir\/\.\/a\.txt/.test((e as Error).message),
      );
      const contiguous = await sample(
        dir,
        `    ti = tarfile.TarInfo("dir/cont"); ti.type = tarfile.CONTTYPE; ti.size = 3; t.addfile(ti, io.BytesIO(b"abc"))`,
      );
      await assert.rejects(
        encodeToBuffer(contiguous, { compression: "zstd:chunked" }),
        (e: unknown) => isRootstockError(e, "TAR_UNSUPPORTED") && /dir\/cont/.test((e as Error).message),
      );
    });
  });
});
