/**
 * bench op: encode a tar file as a layer blob. argv: INPUT OUTPUT COMPRESSION [fast|rollsum]
 * (COMPRESSION: gzip | zstd | zstd:chunked). Writes OUTPUT and OUTPUT.json (the
 * descriptor fields and diff_id); prints the blob size.
 */
import { writeFile } from "node:fs/promises";
import { type Compression, encodeLayerToFile } from "../../src/compress/layer.js";
import { readFileChunks } from "../../src/file-chunks.js";

const [input, output, compression, mode] = process.argv.slice(2);
if (!input || !output || !compression)
  throw new Error("usage: compress-encode INPUT OUTPUT COMPRESSION [fast]");
const layer = await encodeLayerToFile(readFileChunks(input), output, {
  compression: compression as Compression,
  fast: mode === "fast",
  chunking: mode === "rollsum",
});
const { toc: _toc, ...descriptor } = layer;
await writeFile(`${output}.json`, JSON.stringify(descriptor));
console.log(layer.size);
