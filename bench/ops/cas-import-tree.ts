/**
 * argv: STORE DIR [fsync|batch] — adds every regular file under DIR as a file object (copy,
 * verified, fsynced, deduplicated by content); prints the bytes added.
 */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ContentStore } from "../../src/cas/store.js";

const [root, dir, durability] = process.argv.slice(2);
const store = await ContentStore.open(root!, { durability: durability === "batch" ? "batch" : "fsync" });
const files: string[] = [];
async function walk(path: string): Promise<void> {
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) await walk(full);
    else if (entry.isFile()) files.push(full);
  }
}
await walk(dir!);
let bytes = 0;
let next = 0;
await store.withLease(async () => {
  const worker = async () => {
    while (next < files.length) {
      const path = files[next++]!;
      const put = await store.importFile(path);
      if (!put.existed) {
        const { size } = await lstat(path);
        bytes += size;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  await store.flush();
});
console.log(bytes);
