/** argv: STORE — re-verifies every blob and file object; prints the bytes hashed. */
import { du } from "../../src/cas/du.js";
import { fsck } from "../../src/cas/fsck.js";
import { ContentStore } from "../../src/cas/store.js";

const store = await ContentStore.open(process.argv[2]!);
const report = await fsck(store);
if (!report.clean) throw new Error(`fsck found ${report.problems.length} problems`);
const usage = await du(store);
console.log(usage.blobs.bytes + usage.files.bytes);
