/** bench op: the tree digest of a tar file, streaming (argv: TAR). Prints the tar's size. */
import { stat } from "node:fs/promises";
import { readTarFile } from "../../src/tar/index.js";
import { treeDigestOfTar } from "../../src/tree/tar.js";

const [tar] = process.argv.slice(2);
if (!tar) throw new Error("usage: tree-digest-tar TAR");
process.stderr.write(`${await treeDigestOfTar(readTarFile(tar))}\n`);
console.log((await stat(tar)).size);
