/**
 * bench op: scan a directory, hash every file and print the tree digest's inputs size.
 * argv: DIR [--no-hash]. Prints the content bytes hashed (stdout, last line).
 */
import { treeDigest } from "../../src/tree/digest.js";
import { scan } from "../../src/tree/scan.js";

const [dir, flag] = process.argv.slice(2);
const threads = process.env.TREE_HASH_THREADS ? Number(process.env.TREE_HASH_THREADS) : undefined;
if (!dir) throw new Error("usage: tree-scan DIR [--no-hash]");
const started = performance.now();
const { tree, report } = await scan(dir, { hash: flag !== "--no-hash", concurrency: threads });
const scanned = performance.now();
const digest = flag === "--no-hash" ? "" : treeDigest(tree);
process.stderr.write(
  `${tree.size} entries, ${report.files} files, skipped ${report.skipped.length}; scan+hash ${(scanned - started).toFixed(0)} ms, digest ${(performance.now() - scanned).toFixed(0)} ms ${digest}\n`,
);
console.log(report.bytes);
