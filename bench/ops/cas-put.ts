/** argv: STORE FILE — ingests FILE as one blob (hash while streaming, fsync, commit); prints its size. */
import { createReadStream } from "node:fs";
import { ContentStore } from "../../src/cas/store.js";

const [root, file] = process.argv.slice(2);
const store = await ContentStore.open(root!);
const put = await store.putBlob(createReadStream(file!, { highWaterMark: 1024 * 1024 }));
console.log(put.size);
