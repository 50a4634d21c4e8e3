/**
 * bench op: what `rootstock build` does to make a base image's layer from its root
 * filesystem directory: scan (no separate hashing pass: the writer hashes as it
 * reads), diff against the empty tree, reproducible tar, zstd:chunked at the default
 * setting, written to OUT. argv: DIR OUT. Prints the blob size.
 */

import { clampTreeTimes } from "../../src/build/rootfs.js";
import { DEFAULT_SOURCE_DATE_EPOCH } from "../../src/build/run.js";
import { encodeLayerToFile } from "../../src/compress/layer.js";
import { directoryContent, scan, treeAsLayer, writeLayer } from "../../src/tree/index.js";

const [dir, out] = process.argv.slice(2);
if (!dir || !out) throw new Error("usage: build-layer DIR OUT");
const { tree } = await scan(dir, { hash: false });
clampTreeTimes(tree, DEFAULT_SOURCE_DATE_EPOCH);
const layer = await encodeLayerToFile(
  writeLayer(treeAsLayer(tree), directoryContent(dir), { sourceDateEpoch: DEFAULT_SOURCE_DATE_EPOCH }),
  out,
  { compression: "zstd:chunked" },
);
console.log(layer.size);
