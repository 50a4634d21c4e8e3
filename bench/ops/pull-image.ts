/** bench op: `pull-image STORE REF [FULL_PULL_THRESHOLD]` pulls REF into STORE; prints bytes read. */
import { ContentStore } from "../../src/cas/store.js";
import { parseReference } from "../../src/oci/reference.js";
import { defaultDestination } from "../../src/pull/destination.js";
import { pullImage } from "../../src/pull/pull.js";
import { openPullSource } from "../../src/pull/source.js";

const [storeDir, refText, threshold] = process.argv.slice(2);
if (!storeDir || !refText) throw new Error("usage: pull-image STORE REF [FULL_PULL_THRESHOLD]");
const ref = parseReference(refText);
const store = await ContentStore.open(storeDir, { durability: "batch" });
const source = await openPullSource(ref);
try {
  const r = await pullImage(source, store, {
    destination: defaultDestination(ref),
    ...(threshold ? { fullPullThreshold: Number(threshold) } : {}),
  });
  console.log(r.bytesRead);
} finally {
  await source.close();
}
