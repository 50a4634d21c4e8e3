/**
 * Round trips through real tools: archives from Python tarfile, GNU tar and bsdtar
 * encoded as zstd:chunked must decompress with `zstd -d` to the exact input, verify
 * through the TOC reading, and carry a tar-split identical to `tar-split disasm`'s
 * that `tar-split asm` turns back into the exact tar.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gunzipSync, gzipSync } from "node:zlib";
import { readChunkedMetadata, verifyChunkedBlob } from "../../src/compress/chunked-reader.js";
import { parseChunkedAnnotations } from "../../src/compress/footer.js";
import { decodeLayer } from "../../src/compress/layer.js";
import { zstdDecompress } from "../../src/compress/zstd.js";
import { debianRootfsTar } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";
import { bufferReader, encodeToBuffer, fileChunks, makeArchives, run } from "./helpers.js";

const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

let dir = "";
let archives: Record<string, string> = {};
let release: () => void = () => {};
before(async () => {
  const ready = new Promise<void>((resolve) => {
    void withTempDir(async (d) => {
      dir = d;
      archives = await makeArchives(join(d, "src"));
      resolve();
      await new Promise<void>((r) => {
        release = r;
      });
    });
  });
  await ready;
});
after(() => release());

async function zstdCli(blob: Uint8Array, name: string): Promise<Buffer> {
  const path = join(dir, `${name}.zst`);
  await writeFile(path, blob);
  await run("zstd", ["-q", "-d", "-f", path, "-o", `${path}.out`]);
  return readFile(`${path}.out`);
}

describe("zstd:chunked round trip with real tools", () => {
  for (const name of ["python-pax", "python-gnu", "gnutar-gnu", "gnutar-posix", "gnutar-ustar", "bsdtar"]) {
    it(`${name}: zstd -d, TOC verification, tar-split disasm/asm`, async () => {
      const tarPath = archives[name] as string;
      const input = await readFile(tarPath);
      const { blob, layer } = await encodeToBuffer(tarPath, {
        compression: "zstd:chunked",
        level: 3,
        chunking: true,
      });
      assert.equal(layer.diffId, sha(input));
      assert.equal(layer.digest, sha(blob));
      assert.equal(layer.size, blob.length);
      assert.deepEqual(Object.keys(layer.annotations).sort(), [
        "io.github.containers.zstd-chunked.manifest-checksum",
        "io.github.containers.zstd-chunked.manifest-position",
        "io.github.containers.zstd-chunked.tarsplit-position",
      ]);
      // 1. Plain zstd decoding gives the input byte for byte (trailing record padding included).
      const plain = await zstdCli(blob, name);
      assert.equal(plain.length, input.length);
      assert.ok(plain.equals(input), "zstd -d output differs from the input tar");
      // 2. The TOC reading verifies end to end.
      const meta = await verifyChunkedBlob(bufferReader(blob), layer, layer.diffId);
      assert.ok(meta.toc.entries.some((e) => e.type === "hardlink"));
      assert.ok(meta.toc.entries.some((e) => e.type === "fifo"));
      assert.ok(
        meta.toc.entries.some((e) => e.chunkType === "zeros"),
        "holes.bin has a zeros chunk",
      );
      if (name !== "gnutar-ustar" && name !== "bsdtar" && name !== "python-gnu") {
        assert.ok(
          meta.toc.entries.some((e) => e.xattrs),
          "xattrs carried into the TOC",
        );
      }
      // 3. Our tar-split equals tar-split disasm's (minus its empty trailing segment).
      const pos = parseChunkedAnnotations(layer.annotations)?.tarSplit;
      assert.ok(pos);
      const ours = zstdDecompress(blob.subarray(pos.offset, pos.offset + pos.length), "ts");
      const disasm = join(dir, `${name}.tsdisasm.gz`);
      await run("sh", ["-c", `tar-split disasm --no-stdout --output ${disasm} ${tarPath}`]);
      const theirs = gunzipSync(await readFile(disasm))
        .toString("utf8")
        .replace(/\{"type":2,"payload":"","position":\d+\}\n$/, "");
      assert.equal(Buffer.from(ours).toString("utf8"), theirs);
      // 4. tar-split asm rebuilds the exact tar from our tar-split plus the extracted files.
      const extracted = join(dir, `${name}.x`);
      await mkdir(extracted);
      await run("tar", ["-C", extracted, "-xpf", tarPath]);
      const oursGz = join(dir, `${name}.ours.gz`);
      await writeFile(oursGz, gzipSync(ours));
      const rebuilt = join(dir, `${name}.asm.tar`);
      await run("tar-split", ["asm", "--input", oursGz, "--path", extracted, "--output", rebuilt]);
      assert.ok((await readFile(rebuilt)).equals(input), "tar-split asm output differs from the input tar");
      // 5. A full read through decodeLayer checks blob digest and diff_id.
      let n = 0;
      for await (const c of decodeLayer(fileChunks(join(dir, `${name}.zst`)), layer, layer.diffId))
        n += c.length;
      assert.equal(n, input.length);
    });
  }

  it("one chunk per file and legacy annotations are valid too", async () => {
    const tarPath = archives["gnutar-posix"] as string;
    const { blob, layer } = await encodeToBuffer(tarPath, {
      compression: "zstd:chunked",
      fast: true,
      chunking: false,
      legacyAnnotations: true,
    });
    assert.equal(
      layer.annotations["io.containers.zstd-chunked.manifest-checksum"],
      layer.annotations["io.github.containers.zstd-chunked.manifest-checksum"],
    );
    assert.ok(!layer.toc?.entries.some((e) => e.type === "chunk"));
    await verifyChunkedBlob(bufferReader(blob), layer, layer.diffId);
    assert.ok((await zstdCli(blob, "nochunk")).equals(await readFile(tarPath)));
  });

  it("gzip and zstd layers decode with the real tools", async () => {
    const tarPath = archives["python-pax"] as string;
    const input = await readFile(tarPath);
    for (const compression of ["gzip", "zstd"] as const) {
      const { blob, layer } = await encodeToBuffer(tarPath, { compression });
      const path = join(dir, `plain.${compression}`);
      await writeFile(path, blob);
      const tool = compression === "gzip" ? "gzip" : "zstd";
      const { stdout } = await run("sh", ["-c", `${tool} -dc ${path} | sha256sum`]);
      assert.equal(`sha256:${stdout.split(" ")[0]}`, sha(input));
      assert.equal(layer.diffId, sha(input));
      assert.equal(
        layer.mediaType,
        compression === "gzip"
          ? "application/vnd.oci.image.layer.v1.tar+gzip"
          : "application/vnd.oci.image.layer.v1.tar+zstd",
      );
    }
  });

  it("the essential Debian rootfs round-trips (zstd -d and TOC verification)", async () => {
    const tarPath = await debianRootfsTar("essential");
    const input = await readFile(tarPath);
    const { blob, layer } = await encodeToBuffer(tarPath, { compression: "zstd:chunked", fast: true });
    assert.equal(layer.diffId, sha(input));
    const plain = await zstdCli(blob, "essential");
    assert.ok(plain.equals(input));
    const meta = await readChunkedMetadata(bufferReader(blob), layer);
    assert.ok(meta && !meta.fullPullReason);
    await verifyChunkedBlob(bufferReader(blob), layer, layer.diffId);
  });
});
