/**
 * Streaming tar reader with raw accounting: every byte of the input is attributed to
 * exactly one of an entry's `headerBytes`, an entry's payload, or the trailer, so a
 * re-emit reproduces the input byte for byte (tar-split's model). Memory stays
 * bounded by one input chunk plus one entry's headers.
 */

import { RootstockError } from "../errors.js";
import { readFileChunks } from "../file-chunks.js";
import {
  BLOCK_SIZE,
  blockNameForMessage,
  blockPadding,
  cString,
  decodeHeaderBlock,
  decodeString,
  FieldError,
  isZeroBlock,
  MAX_SPECIAL_FILE_SIZE,
  type PaxRecords,
  parsePaxInteger,
  parsePaxRecords,
  parsePaxTime,
  type RawHeader,
  TYPE_GNU_LONGLINK,
  TYPE_GNU_LONGNAME,
  TYPE_GNU_SPARSE,
  TYPE_PAX,
  TYPE_PAX_GLOBAL,
  typeForTypeflag,
  XATTR_PREFIX,
} from "./header.js";
import type { TarHeader } from "./types.js";

export interface TarEntry {
  header: TarHeader;
  /**
   * The raw bytes consumed since the end of the previous entry's payload: that
   * payload's padding, then every header block of this entry (PAX 'x' and GNU
   * 'L'/'K' headers and their data included). Always a fresh copy.
   */
  headerBytes: Uint8Array;
  /** Offset of `headerBytes` in the input. */
  offset: number;
  /** How many leading bytes of `headerBytes` are the previous payload's padding. */
  padding: number;
  /** Offset of the payload in the input (= offset + headerBytes.length). */
  payloadOffset: number;
  /**
   * The payload, `header.size` bytes, as chunks that are subarrays of the input's
   * chunks (no copy; keeping one keeps its input chunk alive). Iterate it at most
   * once and before moving to the next entry; an unread payload is skipped.
   */
  payload: AsyncIterable<Uint8Array>;
}

/** What follows the last entry: reproduces the end of the input exactly. */
export interface TarTrailer {
  /** Offset of `endBlocks` in the input. */
  offset: number;
  /** The last payload's padding followed by the two zero blocks (tar-split's final segment). */
  endBlocks: Uint8Array;
  /** Every byte after the zero blocks (e.g. record padding to 10240), streamed. */
  rest: AsyncIterable<Uint8Array>;
}

export interface ReadTarOptions {
  /** Size of each read when reading a file (default 1 MiB). */
  chunkSize?: number;
  /**
   * Read into a ring of 4 buffers instead of fresh ones (much less page-fault work).
   * Then a payload chunk is valid only until the next chunk or entry is requested:
   * copy what you keep, and finish writing a chunk before pulling the next one
   * (writeTar and writeChunksToFile do). headerBytes and headers are always copies.
   */
  recycleBuffers?: boolean;
}

const EMPTY = new Uint8Array(0);
const TRAILER_READ_AHEAD = 1 << 20;

/** Pulls bytes from an async iterable of chunks, handing out subarrays where it can. */
class ByteSource {
  private chunk: Uint8Array = EMPTY;
  private pos = 0;
  private ended = false;
  /** Absolute offset of the next unread byte. */
  offset = 0;

  constructor(private readonly iterator: AsyncIterator<Uint8Array>) {}

  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (this.ended) return false;
      const next = await this.iterator.next();
      if (next.done) {
        this.ended = true;
        this.chunk = EMPTY;
        this.pos = 0;
        return false;
      }
      this.chunk = next.value;
      this.pos = 0;
    }
    return true;
  }

  /** Up to `max` bytes from the current chunk, without copying; empty at end of input. */
  async readSome(max: number): Promise<Uint8Array> {
    if (!(await this.fill())) return EMPTY;
    const n = Math.min(max, this.chunk.length - this.pos);
    const out = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return out;
  }

  /** Exactly `n` bytes, or fewer only at end of input (a subarray when one chunk holds them). */
  async readUpTo(n: number): Promise<Uint8Array> {
    const first = await this.readSome(n);
    if (first.length === n || first.length === 0) return first;
    const out = new Uint8Array(n);
    out.set(first);
    let got = first.length;
    while (got < n) {
      const more = await this.readSome(n - got);
      if (more.length === 0) return out.subarray(0, got);
      out.set(more, got);
      got += more.length;
    }
    return out;
  }

  async close(): Promise<void> {
    this.ended = true;
    await this.iterator.return?.();
  }
}

function concat(pieces: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of pieces) total += p.length;
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of pieces) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function formatError(where: string, message: string): RootstockError {
  return new RootstockError("TAR_FORMAT", `tar ${where}: ${message}`);
}

/**
 * A tar archive being read. Iterate it for entries (once); afterwards `trailer`
 * holds the end of the archive. Errors are RootstockError TAR_FORMAT (malformed,
 * truncated) or TAR_UNSUPPORTED (sparse files, PAX global headers, unknown types).
 */
export class TarReader implements AsyncIterable<TarEntry> {
  private readonly source: ByteSource;
  private started = false;
  private trailerValue: TarTrailer | undefined;

  constructor(chunks: AsyncIterable<Uint8Array>) {
    this.source = new ByteSource(chunks[Symbol.asyncIterator]());
  }

  /** The end of the archive; available once entry iteration has finished. */
  get trailer(): TarTrailer {
    if (!this.trailerValue) {
      throw new RootstockError("INTERNAL", "tar trailer read before all entries were read");
    }
    return this.trailerValue;
  }

  /** Stops reading and releases the input (needed only when neither entries nor trailer are finished). */
  close(): Promise<void> {
    return this.source.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<TarEntry> {
    if (this.started) throw new RootstockError("INTERNAL", "a TarReader can be iterated only once");
    this.started = true;
    return this.entries();
  }

  private async *entries(): AsyncGenerator<TarEntry> {
    const src = this.source;
    let finished = false;
    try {
      let padding = 0;
      let unread: PayloadState = { size: 0, remaining: 0, name: "", abandoned: false };
      for (;;) {
        // Skip whatever the caller left of the previous payload.
        while (unread.remaining > 0) {
          const skipped = await src.readSome(unread.remaining);
          if (skipped.length === 0) throw truncated(unread.name, src.offset, unread.remaining, "payload");
          unread.remaining -= skipped.length;
        }
        unread.abandoned = true;
        const offset = src.offset;
        const pieces: Uint8Array[] = [];
        if (padding > 0) {
          const pad = await src.readUpTo(padding);
          if (pad.length < padding) {
            throw truncated(unread.name, src.offset, padding - pad.length, "padding after its payload");
          }
          pieces.push(pad.slice());
        }
        const parsed = await this.readHeaders(pieces);
        if (parsed === undefined) {
          this.trailerValue = { offset, endBlocks: concat(pieces), rest: await this.rest() };
          finished = true;
          return;
        }
        const { header } = parsed;
        const headerBytes = concat(pieces);
        const state: PayloadState = {
          size: header.size,
          remaining: header.size,
          name: header.name,
          abandoned: false,
        };
        unread = state;
        const payloadOffset = offset + headerBytes.length;
        yield {
          header,
          headerBytes,
          offset,
          padding,
          payloadOffset,
          payload: payloadOf(src, state),
        };
        padding = blockPadding(header.size);
      }
    } finally {
      if (!finished) await src.close();
    }
  }

  /**
   * The bytes after the end-of-archive marker. Up to 1 MiB is read ahead so that in
   * the usual case (record padding) the input is exhausted and its file closed even
   * when the caller never reads the trailer.
   */
  private async rest(): Promise<AsyncIterable<Uint8Array>> {
    const source = this.source;
    const ahead: Uint8Array[] = [];
    let aheadBytes = 0;
    let exhausted = false;
    while (aheadBytes < TRAILER_READ_AHEAD) {
      const chunk = await source.readSome(TRAILER_READ_AHEAD - aheadBytes);
      if (chunk.length === 0) {
        exhausted = true;
        break;
      }
      ahead.push(chunk.slice()); // a copy: the input may recycle its buffers
      aheadBytes += chunk.length;
    }
    return (async function* () {
      yield* ahead;
      while (!exhausted) {
        const chunk = await source.readSome(Number.POSITIVE_INFINITY);
        if (chunk.length === 0) return;
        yield chunk;
      }
    })();
  }

  /**
   * Reads every header block of one entry into `pieces` and resolves it; returns
   * undefined at the end-of-archive marker (its two blocks pushed to `pieces`).
   */
  private async readHeaders(pieces: Uint8Array[]): Promise<{ header: TarHeader } | undefined> {
    const src = this.source;
    let pax: PaxRecords | undefined;
    let longName: Uint8Array | undefined;
    let longLink: Uint8Array | undefined;
    for (;;) {
      const blockOffset = src.offset;
      // Copies: pieces outlive the input chunk when the input recycles its buffers.
      const block = (await src.readUpTo(BLOCK_SIZE)).slice();
      if (block.length === 0) {
        throw formatError(
          `archive at offset ${blockOffset}`,
          "truncated: input ends without the end-of-archive marker (two zero blocks)",
        );
      }
      if (block.length < BLOCK_SIZE) {
        throw formatError(`header at offset ${blockOffset}`, `truncated: only ${block.length} of 512 bytes`);
      }
      if (isZeroBlock(block)) {
        if (pax || longName || longLink) {
          throw formatError(
            `header at offset ${blockOffset}`,
            "extension header is not followed by an entry",
          );
        }
        const second = await src.readUpTo(BLOCK_SIZE);
        if (second.length < BLOCK_SIZE) {
          throw formatError(
            `end-of-archive marker at offset ${blockOffset}`,
            "truncated: only one zero block (need two)",
          );
        }
        if (!isZeroBlock(second)) {
          throw formatError(`header at offset ${blockOffset}`, "zero block followed by a non-zero block");
        }
        pieces.push(block, second.slice());
        return undefined;
      }
      pieces.push(block);
      const where = () =>
        `entry ${JSON.stringify(blockNameForMessage(block))} (header at offset ${blockOffset})`;
      let raw: RawHeader;
      try {
        raw = decodeHeaderBlock(block);
      } catch (err) {
        if (err instanceof FieldError) throw formatError(where(), err.message);
        throw err;
      }
      const flag = raw.typeflag;
      if (flag === TYPE_PAX || flag === TYPE_GNU_LONGNAME || flag === TYPE_GNU_LONGLINK) {
        if (raw.size < 0) throw formatError(where(), `negative size ${raw.size}`);
        if (raw.size > MAX_SPECIAL_FILE_SIZE) {
          throw formatError(
            where(),
            `extension header data of ${raw.size} bytes exceeds ${MAX_SPECIAL_FILE_SIZE}`,
          );
        }
        const data = await src.readUpTo(raw.size);
        if (data.length < raw.size)
          throw truncated(where(), src.offset, raw.size - data.length, "extension data");
        const pad = blockPadding(raw.size);
        const padBytes = await src.readUpTo(pad);
        if (padBytes.length < pad)
          throw truncated(where(), src.offset, pad - padBytes.length, "extension padding");
        pieces.push(data.slice(), padBytes.slice());
        if (flag === TYPE_PAX) {
          try {
            pax = parsePaxRecords(data);
          } catch (err) {
            if (err instanceof FieldError) throw formatError(where(), err.message);
            throw err;
          }
          for (const key of pax.keys()) {
            if (key.startsWith("GNU.sparse.")) {
              throw new RootstockError(
                "TAR_UNSUPPORTED",
                `tar ${where()}: GNU sparse file (PAX record ${key}) is not supported`,
              );
            }
          }
        } else if (flag === TYPE_GNU_LONGNAME) longName = cString(data).slice();
        else longLink = cString(data).slice();
        continue;
      }
      if (flag === TYPE_PAX_GLOBAL) {
        throw new RootstockError(
          "TAR_UNSUPPORTED",
          `tar ${where()}: PAX global header ('g') is not supported`,
        );
      }
      if (flag === TYPE_GNU_SPARSE) {
        throw new RootstockError("TAR_UNSUPPORTED", `tar ${where()}: GNU sparse file ('S') is not supported`);
      }
      let type = typeForTypeflag(flag);
      if (type === undefined) {
        const shown =
          flag >= 0x20 && flag < 0x7f ? `'${String.fromCharCode(flag)}'` : `0x${flag.toString(16)}`;
        throw new RootstockError("TAR_UNSUPPORTED", `tar ${where()}: unknown typeflag ${shown}`);
      }

      const header = resolveHeader(raw, type, pax, longName, longLink, where);
      // Legacy archives mark directories by a trailing slash on a NUL typeflag (Go does the same).
      if (flag === 0 && header.name.endsWith("/")) type = header.type = "dir";
      const declared = header.size;
      if (declared < 0) throw formatError(where(), `negative size ${declared}`);
      if (type !== "file") {
        header.size = 0;
        if (declared !== 0) header.declaredSize = declared;
      }
      return { header };
    }
  }
}

function truncated(what: string, offset: number, missing: number, part: string): RootstockError {
  const subject = what.startsWith("entry ") ? what : `entry ${JSON.stringify(what)}`;
  return new RootstockError(
    "TAR_FORMAT",
    `tar ${subject}: truncated: input ends at offset ${offset}, ${missing} bytes short of the ${part}`,
  );
}

/** Applies PAX records and GNU long names to a decoded block (Go's mergePAX, then L/K win). */
function resolveHeader(
  raw: RawHeader,
  type: NonNullable<ReturnType<typeof typeForTypeflag>>,
  pax: PaxRecords | undefined,
  longName: Uint8Array | undefined,
  longLink: Uint8Array | undefined,
  where: () => string,
): TarHeader {
  let nameBytes = raw.name;
  let linkBytes = raw.linkname;
  const header: TarHeader = {
    name: "",
    linkname: "",
    type,
    typeflag: raw.typeflag,
    mode: raw.mode,
    uid: raw.uid,
    gid: raw.gid,
    uname: raw.uname,
    gname: raw.gname,
    size: raw.size,
    mtime: { sec: raw.mtime, nsec: 0 },
    devmajor: raw.devmajor,
    devminor: raw.devminor,
    xattrs: [],
  };
  if (raw.atime !== undefined) header.atime = { sec: raw.atime, nsec: 0 };
  if (raw.ctime !== undefined) header.ctime = { sec: raw.ctime, nsec: 0 };

  if (pax) {
    try {
      for (const [key, value] of pax) {
        if (value.length === 0) continue; // Go keeps the header field (and drops empty xattrs)
        const text = () => decodeString(value).text;
        switch (key) {
          case "path":
            nameBytes = value;
            break;
          case "linkpath":
            linkBytes = value;
            break;
          case "uname":
            header.uname = text();
            break;
          case "gname":
            header.gname = text();
            break;
          case "uid":
            header.uid = parsePaxInteger(text(), "uid");
            break;
          case "gid":
            header.gid = parsePaxInteger(text(), "gid");
            break;
          case "size":
            header.size = parsePaxInteger(text(), "size");
            break;
          case "mtime":
            header.mtime = parsePaxTime(text(), "mtime");
            break;
          case "atime":
            header.atime = parsePaxTime(text(), "atime");
            break;
          case "ctime":
            header.ctime = parsePaxTime(text(), "ctime");
            break;
          default:
            if (key.startsWith(XATTR_PREFIX)) header.xattrs.push([key.slice(XATTR_PREFIX.length), value]);
        }
      }
    } catch (err) {
      if (err instanceof FieldError) throw formatError(where(), err.message);
      throw err;
    }
  }
  if (longName && longName.length > 0) nameBytes = longName;
  if (longLink && longLink.length > 0) linkBytes = longLink;

  const name = decodeString(nameBytes);
  header.name = name.text;
  if (name.raw) header.nameRaw = name.raw;
  const link = decodeString(linkBytes);
  header.linkname = link.text;
  if (link.raw) header.linknameRaw = link.raw;
  return header;
}

interface PayloadState {
  size: number;
  remaining: number;
  name: string;
  /** Set once the reader moved past this entry: its payload can no longer be read. */
  abandoned: boolean;
}

async function* payloadOf(src: ByteSource, state: PayloadState): AsyncGenerator<Uint8Array> {
  if (state.abandoned && state.size > 0) {
    throw new RootstockError(
      "INTERNAL",
      `tar entry ${JSON.stringify(state.name)}: payload read after moving on`,
    );
  }
  while (state.remaining > 0) {
    const chunk = await src.readSome(state.remaining);
    if (chunk.length === 0) throw truncated(state.name, src.offset, state.remaining, "payload");
    state.remaining -= chunk.length;
    yield chunk;
  }
}

/** Reads a tar from chunks (any size; they must not be modified afterwards). */
export function readTar(chunks: AsyncIterable<Uint8Array>): TarReader {
  return new TarReader(chunks);
}

/** Reads a tar file with large reads (default 1 MiB). */
export function readTarFile(path: string, options: ReadTarOptions = {}): TarReader {
  return new TarReader(readFileChunks(path, options.chunkSize, options.recycleBuffers));
}

/** Collects a (small) payload into one buffer. */
export async function collectBytes(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for await (const c of chunks) pieces.push(c);
  return concat(pieces);
}
