/**
 * bench op: full decode + verify of a layer blob written by compress-encode.
 * argv: BLOB [toc] — plain: decompress the stream, check blob digest and diff_id;
 * toc: the partial-pull reading (TOC, tar-split, every file, rebuilt tar == diff_id).
 * Prints the tar size.
 */
import { readFile } from "node:fs/promises";
import { fileRangeReader, verifyChunkedBlob } from "../../src/compress/chunked-reader.js";
import { decodeLayer, type EncodedLayer } from "../../src/compress/layer.js";
import { readFileChunks } from "../../src/file-chunks.js";

const [blob, mode] = process.argv.slice(2);
if (!blob) throw new Error("usage: compress-decode BLOB [toc]");
const layer = JSON.parse(await readFile(`${blob}.json`, "utf8")) as EncodedLayer;
if (mode === "toc") {
  const r = await fileRangeReader(blob);
  try {
    await verifyChunkedBlob(r.read, { size: r.size, annotations: layer.annotations }, layer.diffId);
  } finally {
    await r.close();
  }
  console.log(layer.uncompressedSize);
} else {
  let n = 0;
  for await (const chunk of decodeLayer(readFileChunks(blob), layer, layer.diffId)) n += chunk.length;
  console.log(n);
}
