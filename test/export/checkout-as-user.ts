/**
 * Helper process for checkout.test.ts, run as an unprivileged user: exports the image
 * REF of the store argv[2] as a dir to argv[3] and then argv[4], and prints both
 * results' dir parts and tree digests as JSON.
 */
import { ContentStore } from "../../src/cas/store.js";
import { exportImage } from "../../src/export/export.js";
import { openEndpoint } from "../../src/image/endpoint.js";
import { parseReference } from "../../src/oci/reference.js";

const [storeDir, ...targets] = process.argv.slice(2) as [string, string, string];
const results = [];
for (const output of targets) {
  const source = await openEndpoint(parseReference("store:checkout:test"), { storeDir });
  const store = await ContentStore.open(storeDir, { durability: "batch" });
  const r = await exportImage(source, store, { format: "dir", output, durable: false });
  await source.close();
  results.push({ dir: r.dir, treeDigest: r.treeDigest });
}
process.stdout.write(JSON.stringify(results));
