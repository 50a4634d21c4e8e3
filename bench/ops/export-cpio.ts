/**
 * bench op: write a cpio newc archive of an entry manifest. argv: MANIFEST OUT.cpio.
 * Prints the archive size.
 */
import { createWriteStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { writeCpio } from "../../src/export/cpio.js";
import { entriesFromManifest } from "../suites/export.js";

const [manifest, out] = process.argv.slice(2);
if (!manifest || !out) throw new Error("usage: export-cpio MANIFEST OUT");
await pipeline(
  Readable.from(writeCpio(entriesFromManifest(await readFile(manifest, "utf8")))),
  createWriteStream(out),
);
console.log((await stat(out)).size);
