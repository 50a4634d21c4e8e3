/**
 * Helper process for safe-dir.test.ts, run as an unprivileged user: exports the
 * metadata-heavy sample to argv[2] and prints the result as JSON.
 */
import { writeDirectory } from "../../src/export/safe-dir.js";
import { metadataEntries } from "./tree-listing.js";

const result = await writeDirectory(process.argv[2]!, metadataEntries(), { durable: false });
process.stdout.write(JSON.stringify(result));
