/**
 * bench op: parse a tar and re-emit it byte-exact. argv: INPUT OUTPUT (a file path, or
 * /dev/null). Prints the number of bytes written; exits non-zero if the re-emitted
 * archive differs in length from the input.
 */
import { stat } from "node:fs/promises";
import { readTarFile, reemitTar, writeChunksToFile, writeTar } from "../../src/tar/index.js";

const [input, output] = process.argv.slice(2);
if (!input || !output) throw new Error("usage: tar-reemit INPUT OUTPUT");
const reader = readTarFile(input, { recycleBuffers: true });
const written =
  output === "/dev/null"
    ? await drain(writeTar(reemitTar(reader)))
    : await writeChunksToFile(writeTar(reemitTar(reader)), output, { sync: false });
const { size } = await stat(input);
if (written !== size) throw new Error(`re-emitted ${written} bytes, input has ${size}`);
console.log(written);

async function drain(chunks: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const chunk of chunks) n += chunk.length;
  return n;
}
