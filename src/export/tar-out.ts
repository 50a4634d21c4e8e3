/**
 * The tar export's byte stream: the canonical headers of the tree module's layer
 * writer (`layerTarEntries`: ustar or one sorted PAX header, numeric owners,
 * whole-second mtimes, no atime/ctime, SCHILY xattrs) with file contents read from
 * the store's file objects straight into large output buffers, as `tar -c` does:
 * one read per small file, no per-chunk stream machinery. Same tree → same bytes.
 */
import { closeSync, constants, openSync, readSync } from "node:fs";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import type { ProgressSink } from "../progress.js";
import { BLOCK_SIZE, blockPadding, END_OF_ARCHIVE, encodeHeader } from "../tar/index.js";
import { type LayerEntry, layerTarEntries } from "../tree/index.js";

const OUT_CHUNK = 4 << 20;
const NO_CONTENT = async function* (): AsyncGenerator<Uint8Array> {};

/** Tar bytes for `entries` (parents first, hard link targets before links), contents from `pathOf(digest)`. */
export async function* rootfsTar(
  entries: readonly LayerEntry[],
  pathOf: (digest: Digest) => string,
  opts: { progress?: ProgressSink; reuseBuffer?: boolean } = {},
): AsyncGenerator<Uint8Array> {
  // With reuseBuffer the consumer must be done with a chunk before asking for the
  // next (a synchronous file write): no fresh pages to fault in for every 4 MiB.
  let buf = Buffer.allocUnsafe(OUT_CHUNK);
  const fresh = () => (opts.reuseBuffer ? buf : Buffer.allocUnsafe(OUT_CHUNK));
  let pos = 0;
  const put = function* (bytes: Uint8Array): Generator<Uint8Array> {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, buf.length - pos);
      buf.set(bytes.subarray(at, at + n), pos);
      pos += n;
      at += n;
      if (pos === buf.length) {
        yield buf;
        buf = fresh();
        pos = 0;
      }
    }
  };
  const zeros = new Uint8Array(BLOCK_SIZE);
  for await (const { header, entry } of layerTarEntries(
    entries,
    NO_CONTENT,
    opts.progress ? { progress: opts.progress } : {},
  )) {
    yield* put(encodeHeader(header));
    if (header.type !== "file" || header.size === 0 || entry.kind !== "node") continue;
    const path = pathOf(entry.node.digest!);
    const fd = openSync(path, constants.O_RDONLY);
    try {
      let left = header.size;
      while (left > 0) {
        const n = readSync(fd, buf, pos, Math.min(left, buf.length - pos), null);
        if (n === 0) {
          throw new RootstockError(
            "STORE_CORRUPT",
            `file object ${path} for ${JSON.stringify(entry.path)} is shorter than ${header.size} bytes`,
          );
        }
        pos += n;
        left -= n;
        if (pos === buf.length) {
          yield buf;
          buf = fresh();
          pos = 0;
        }
      }
    } finally {
      closeSync(fd);
    }
    const pad = blockPadding(header.size);
    if (pad > 0) yield* put(zeros.subarray(0, pad));
  }
  yield* put(END_OF_ARCHIVE);
  if (pos > 0) yield buf.subarray(0, pos);
}
