/**
 * Reading a file in large chunks with the next read in flight: shared by the tar
 * reader, the stores' blob streams and the importers.
 */
import { open } from "node:fs/promises";

/**
 * Reads a file in `chunkSize` buffers with the next read in flight while the consumer
 * works on the current chunk. Buffers are fresh (chunks stay valid forever) unless
 * `recycle`, which cycles through 4 buffers (see ReadTarOptions.recycleBuffers).
 */
export async function* readFileChunks(
  path: string,
  chunkSize = 1 << 20,
  recycle = false,
): AsyncGenerator<Uint8Array> {
  const handle = await open(path, "r");
  const ring = recycle ? Array.from({ length: 4 }, () => Buffer.allocUnsafe(chunkSize)) : undefined;
  let turn = 0;
  const nextBuffer = () => (ring ? ring[turn++ % ring.length]! : Buffer.allocUnsafe(chunkSize));
  let position = 0;
  const readAt = (at: number) => handle.read(nextBuffer(), 0, chunkSize, at);
  let pending = readAt(0);
  try {
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) return;
      position += bytesRead;
      pending = readAt(position);
      yield bytesRead === chunkSize ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    // Let an in-flight read finish before closing the handle under it.
    await pending.catch(() => {});
    await handle.close();
  }
}
