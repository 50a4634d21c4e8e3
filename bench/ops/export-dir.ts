/**
 * bench op: export an entry manifest (JSON written by bench/suites/export.ts) into a
 * directory. argv: MANIFEST OUT hardlink|copy. Prints the number of entries.
 */
import { readFile } from "node:fs/promises";
import type { ExportEntry } from "../../src/export/entry.js";
import { writeDirectory } from "../../src/export/safe-dir.js";
import { entriesFromManifest } from "../suites/export.js";

const [manifest, out, mode] = process.argv.slice(2);
if (!manifest || !out) throw new Error("usage: export-dir MANIFEST OUT hardlink|copy");
const entries: ExportEntry[] = entriesFromManifest(await readFile(manifest, "utf8"));
const result = await writeDirectory(out, entries, {
  content: mode === "copy" ? "copy" : "hardlink",
  durable: false,
});
process.stderr.write(`linked ${result.linked}, copied ${result.copied}, skipped ${result.skipped.length}\n`);
console.log(result.entries);
