/**
 * bench op: scan DIR, hash it, and write it as one reproducible layer tar to OUT
 * (what `rootstock import DIR` does before compression). Prints the layer's size.
 */
import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { coalesceChunks } from "../../src/tar/index.js";
import { treeDigest } from "../../src/tree/digest.js";
import { treeAsLayer } from "../../src/tree/layer.js";
import { scan } from "../../src/tree/scan.js";
import { directoryContent, writeLayer } from "../../src/tree/tar.js";

const [dir, out] = process.argv.slice(2);
if (!dir || !out) throw new Error("usage: tree-layer DIR OUT");
// Hashes while writing: each file is read once (scan without hash fills digests in writeLayer).
const { tree } = await scan(dir, { hash: false });
let bytes = 0;
async function* counted() {
  const layer = writeLayer(treeAsLayer(tree), directoryContent(dir!), { sourceDateEpoch: 1_700_000_000 });
  // 256 KiB runs: headers and small files are gathered, 1 MiB file chunks pass through uncopied.
  for await (const chunk of coalesceChunks(layer, 1 << 18)) {
    bytes += chunk.length;
    yield chunk;
  }
}
await pipeline(Readable.from(counted()), createWriteStream(out));
process.stderr.write(`tree digest ${treeDigest(tree)}\n`);
console.log(bytes);
