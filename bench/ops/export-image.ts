/**
 * bench op: `rootstock export` of an image in the store, in process (no CLI layer).
 * argv: STORE REF FORMAT OUT [--copy]. Prints the bytes written (archives) or the
 * entry count (dir); phase times on stderr (where the time goes).
 */
import { ContentStore } from "../../src/cas/store.js";
import { type ExportFormat, exportImage } from "../../src/export/export.js";
import { openEndpoint } from "../../src/image/endpoint.js";
import { parseReference } from "../../src/oci/reference.js";
import type { ProgressEvent } from "../../src/progress.js";

const t0 = performance.now();
const [storeDir, ref, format, out, flag] = process.argv.slice(2);
if (!storeDir || !ref || !format || !out)
  throw new Error("usage: export-image STORE REF FORMAT OUT [--copy]");
const phases: string[] = [];
const started = new Map<string, number>();
const progress = (e: ProgressEvent) => {
  if (e.type === "start") started.set(e.id, performance.now());
  if (e.type === "done")
    phases.push(`${e.id} ${(performance.now() - (started.get(e.id) ?? t0)).toFixed(0)} ms`);
};
const source = await openEndpoint(parseReference(ref), { storeDir });
const store = await ContentStore.open(storeDir, { durability: "batch" });
const loaded = performance.now();
const r = await exportImage(source, store, {
  format: format as ExportFormat,
  output: out,
  copy: flag === "--copy",
  durable: false,
  progress,
});
const done = performance.now();
process.stderr.write(
  `startup+imports ${(loaded - t0 + (globalThis.performance.timeOrigin ? 0 : 0)).toFixed(0)} ms (process ${performance.timeOrigin ? t0.toFixed(0) : "?"} ms before), export ${(done - loaded).toFixed(0)} ms; ${phases.join(", ")}; ` +
    `${r.dir ? `linked ${r.dir.linked} copied ${r.dir.copied} farm made ${r.dir.farm.made}` : `${r.bytes} bytes`}; layers ${r.layers.map((l) => l.via).join(",")}\n`,
);
console.log(r.bytes ?? r.inventory.files);
