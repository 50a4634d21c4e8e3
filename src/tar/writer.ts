/**
 * Tar writer. Two kinds of entries can be mixed freely:
 *  - new entries ({header, payload}): encoded canonically by encodeHeader, padded with zeros;
 *  - raw entries (a TarEntry from the reader): its headerBytes re-emitted verbatim, so
 *    reader → writer reproduces the input byte for byte.
 * The archive ends with a raw trailer (from the reader) or two zero blocks. Output is a
 * stream of chunks (pull: writeTar) or pushed into a sink (TarWriter); memory stays
 * bounded by one header plus the chunk in flight.
 */
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { RootstockError } from "../errors.js";
import { BLOCK_SIZE, blockPadding, END_OF_ARCHIVE, encodeHeader, isHeaderOnlyType } from "./header.js";
import type { TarHeader } from "./types.js";

export type TarPayload = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** An entry to encode from its header (canonical, deterministic). */
export interface TarNewEntry {
  header: TarHeader;
  /** Exactly header.size bytes (none for header-only types). */
  payload?: TarPayload;
}

/** An entry to re-emit as it was read (a TarEntry fits). */
export interface TarRawEntry {
  header: TarHeader;
  headerBytes: Uint8Array;
  /** Leading bytes of headerBytes that are the previous payload's padding. */
  padding: number;
  payload?: TarPayload;
}

/** The end of an archive as it was read (a TarTrailer fits). */
export interface TarRawTrailer {
  endBlocks: Uint8Array;
  rest?: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export type TarWriteItem = TarNewEntry | TarRawEntry | TarRawTrailer;

const ZEROS = new Uint8Array(BLOCK_SIZE);

function isTrailer(item: TarWriteItem): item is TarRawTrailer {
  return "endBlocks" in item;
}

function isRaw(item: TarWriteItem): item is TarRawEntry {
  return "headerBytes" in item;
}

/** Encoding state: the padding owed after the last payload, and whether the archive ended. */
class WriterState {
  owedPadding = 0;
  ended = false;
  bytesWritten = 0;

  *emitItemHead(item: TarNewEntry | TarRawEntry): Generator<Uint8Array> {
    if (this.ended) throw new RootstockError("INTERNAL", "tar writer: entry after the end of the archive");
    if (isRaw(item)) {
      if (item.padding === this.owedPadding) yield item.headerBytes;
      else {
        // The raw bytes carry another payload's padding: pad our own way, keep the headers.
        if (this.owedPadding > 0) yield ZEROS.subarray(0, this.owedPadding);
        yield item.headerBytes.subarray(item.padding);
      }
    } else {
      if (this.owedPadding > 0) yield ZEROS.subarray(0, this.owedPadding);
      yield encodeHeader(item.header);
    }
    this.owedPadding = blockPadding(payloadSize(item.header));
  }

  *emitTrailerHead(trailer: TarRawTrailer | undefined): Generator<Uint8Array> {
    if (this.ended) throw new RootstockError("INTERNAL", "tar writer: archive ended twice");
    this.ended = true;
    if (trailer) {
      // endBlocks = padding + two zero blocks; its padding is the owed padding when re-emitting.
      const theirPadding = trailer.endBlocks.length - 2 * BLOCK_SIZE;
      if (theirPadding === this.owedPadding) yield trailer.endBlocks;
      else {
        if (this.owedPadding > 0) yield ZEROS.subarray(0, this.owedPadding);
        yield trailer.endBlocks.subarray(Math.max(0, theirPadding));
      }
    } else {
      if (this.owedPadding > 0) yield ZEROS.subarray(0, this.owedPadding);
      yield END_OF_ARCHIVE;
    }
    this.owedPadding = 0;
  }
}

/** Bytes of payload that follow the header: none for header-only types, whatever `size` says. */
function payloadSize(header: TarHeader): number {
  return isHeaderOnlyType(header.type) ? 0 : header.size;
}

function isAsyncIterable(x: unknown): x is AsyncIterable<Uint8Array> {
  return typeof (x as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === "function";
}

/** Passes a payload through, checking it has exactly header.size bytes. */
async function* checkedPayload(
  header: TarHeader,
  payload: TarPayload | undefined,
): AsyncGenerator<Uint8Array> {
  const expected = payloadSize(header);
  let got = 0;
  if (payload !== undefined) {
    const chunks = payload instanceof Uint8Array ? [payload] : payload;
    const iterate = isAsyncIterable(chunks) ? chunks : toAsync(chunks);
    for await (const chunk of iterate) {
      got += chunk.length;
      if (got > expected) break;
      if (chunk.length > 0) yield chunk;
    }
  }
  if (got !== expected) {
    throw new RootstockError(
      "SIZE_MISMATCH",
      got > expected
        ? `tar entry ${JSON.stringify(header.name)}: payload is longer than the ${expected} bytes its header says`
        : `tar entry ${JSON.stringify(header.name)}: payload has ${got} bytes, its header says ${expected}`,
    );
  }
}

async function* toAsync(chunks: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* chunks;
}

/**
 * Streams a tar archive from items. Ends with the raw trailer if the last item is
 * one, else with two zero blocks (no record padding).
 */
export async function* writeTar(
  items: AsyncIterable<TarWriteItem> | Iterable<TarWriteItem>,
): AsyncGenerator<Uint8Array> {
  const state = new WriterState();
  for await (const item of items) {
    if (isTrailer(item)) {
      yield* state.emitTrailerHead(item);
      if (item.rest) yield* item.rest;
      continue;
    }
    yield* state.emitItemHead(item);
    yield* checkedPayload(item.header, item.payload);
  }
  if (!state.ended) yield* state.emitTrailerHead(undefined);
}

/** The reader's entries followed by its trailer: feed to writeTar to reproduce the input. */
export async function* reemitTar(
  reader: AsyncIterable<TarRawEntry> & { readonly trailer: TarRawTrailer },
): AsyncGenerator<TarWriteItem> {
  for await (const entry of reader) yield entry;
  yield reader.trailer;
}

/** Where TarWriter pushes its output; awaiting the promise gives backpressure. */
export type TarSink = (chunk: Uint8Array) => void | Promise<void>;

/** Push-style writer for producers that walk something (a directory tree) themselves. */
export class TarWriter {
  private readonly state = new WriterState();

  constructor(private readonly sink: TarSink) {}

  get bytesWritten(): number {
    return this.state.bytesWritten;
  }

  private async push(chunk: Uint8Array): Promise<void> {
    this.state.bytesWritten += chunk.length;
    await this.sink(chunk);
  }

  /** Adds an entry encoded canonically from its header. */
  async add(header: TarHeader, payload?: TarPayload): Promise<void> {
    for (const chunk of this.state.emitItemHead({ header })) await this.push(chunk);
    for await (const chunk of checkedPayload(header, payload)) await this.push(chunk);
  }

  /** Adds an entry re-emitted from its raw header bytes. */
  async addRaw(entry: TarRawEntry): Promise<void> {
    for (const chunk of this.state.emitItemHead(entry)) await this.push(chunk);
    for await (const chunk of checkedPayload(entry.header, entry.payload)) await this.push(chunk);
  }

  /** Ends the archive: the raw trailer when given, else two zero blocks. */
  async finish(trailer?: TarRawTrailer): Promise<void> {
    for (const chunk of this.state.emitTrailerHead(trailer)) await this.push(chunk);
    if (trailer?.rest) for await (const chunk of trailer.rest) await this.push(chunk);
  }
}

/**
 * Regroups a stream of chunks into ~`target`-byte chunks: small chunks (headers,
 * small files) are copied together, large ones pass through untouched. Cuts the
 * number of writes when the consumer is a file or a socket. Regrouped chunks are
 * fresh buffers unless `reuseBuffer`: then they share one buffer and each is valid
 * only until the next one is requested (for consumers that finish each write first).
 */
export async function* coalesceChunks(
  chunks: AsyncIterable<Uint8Array>,
  target = 1 << 20,
  options: { reuseBuffer?: boolean } = {},
): AsyncGenerator<Uint8Array> {
  let buffer = Buffer.allocUnsafe(target);
  const renew = () => {
    if (!options.reuseBuffer) buffer = Buffer.allocUnsafe(target);
  };
  let used = 0;
  for await (const chunk of chunks) {
    if (used + chunk.length <= target) {
      buffer.set(chunk, used);
      used += chunk.length;
      if (used === target) {
        yield buffer;
        renew();
        used = 0;
      }
      continue;
    }
    if (used > 0) {
      yield buffer.subarray(0, used);
      renew();
      used = 0;
    }
    if (chunk.length >= target / 2) yield chunk;
    else {
      buffer.set(chunk, 0);
      used = chunk.length;
    }
  }
  if (used > 0) yield buffer.subarray(0, used);
}

/**
 * Writes chunks to `path` through `path.partial` and a rename, so a failed write
 * never leaves a half-written file under the final name. Returns the byte count.
 */
export async function writeChunksToFile(
  chunks: AsyncIterable<Uint8Array>,
  path: string,
  options: { sync?: boolean } = {},
): Promise<number> {
  const partial = `${path}.partial`;
  const handle = await open(partial, "w");
  let total = 0;
  try {
    // Each write finishes before the next chunk is pulled: the source may recycle buffers.
    for await (const chunk of coalesceChunks(chunks, 1 << 20, { reuseBuffer: true })) {
      await writeAll(handle, chunk);
      total += chunk.length;
    }
    if (options.sync !== false) await handle.sync();
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(partial, { force: true });
    throw err;
  }
  await rename(partial, path);
  return total;
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let pos = 0;
  while (pos < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, pos, chunk.length - pos);
    pos += bytesWritten;
  }
}
