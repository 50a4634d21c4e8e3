/**
 * Parallel gzip the way pigz does it: the input is cut into 1 MiB blocks, each
 * compressed as raw deflate with the previous 32 KiB as dictionary and ended with a
 * sync flush (the last one finished), on libuv's thread pool; the blocks are
 * concatenated in order inside one gzip member with a CRC-32 of the whole input.
 * The output is a single ordinary gzip stream.
 */
import { promisify } from "node:util";
import zlib from "node:zlib";
import { RootstockError } from "../errors.js";

const deflateRaw = promisify(zlib.deflateRaw) as (buf: Uint8Array, opts: zlib.ZlibOptions) => Promise<Buffer>;

const BLOCK = 1024 * 1024;
const DICT = 32 * 1024;

export async function* encodeGzip(
  source: AsyncIterable<Uint8Array>,
  level: number,
  threads: number,
): AsyncGenerator<Uint8Array> {
  // mtime 0, XFL 0, OS 3 (Unix): deterministic output.
  yield Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03]);
  let crc = 0;
  let total = 0;
  const queue: Promise<Buffer>[] = [];
  const maxInFlight = Math.max(2, threads * 2);
  let prevTail: Uint8Array | undefined;
  let pending: Uint8Array[] = [];
  let pendingLen = 0;
  const submit = (block: Uint8Array, final: boolean) => {
    const opts: zlib.ZlibOptions = {
      level,
      finishFlush: final ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
    };
    if (prevTail) opts.dictionary = prevTail;
    queue.push(
      deflateRaw(block, opts).catch((err) => {
        throw new RootstockError("COMPRESSION", `gzip: ${String(err)}`, { cause: err });
      }),
    );
    prevTail =
      block.length >= DICT
        ? block.subarray(block.length - DICT)
        : Buffer.concat([prevTail ?? new Uint8Array(0), block]).subarray(-DICT);
  };
  for await (const chunk of source) {
    crc = zlib.crc32(chunk, crc);
    total += chunk.length;
    let c = chunk;
    while (c.length > 0) {
      const take = Math.min(c.length, BLOCK - pendingLen);
      pending.push(c.subarray(0, take));
      pendingLen += take;
      c = c.subarray(take);
      if (pendingLen === BLOCK) {
        submit(Buffer.concat(pending, pendingLen), false);
        pending = [];
        pendingLen = 0;
        while (queue.length >= maxInFlight) yield await (queue.shift() as Promise<Buffer>);
      }
    }
  }
  submit(Buffer.concat(pending, pendingLen), true);
  while (queue.length > 0) yield await (queue.shift() as Promise<Buffer>);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(total % 2 ** 32, 4);
  yield trailer;
}
