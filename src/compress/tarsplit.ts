/**
 * tar-split JSON lines (zstd-chunked.md §6): the packer that records a tar's exact
 * bytes minus file payloads, its strict reader, and the assembler that rebuilds the
 * tar from it plus the payloads, checking each payload's CRC-64.
 */
import { RootstockError } from "../errors.js";
import { Crc64 } from "./crc64.js";
import { goString } from "./gojson.js";

export const TARSPLIT_FILE = 1;
export const TARSPLIT_SEGMENT = 2;
/** tar-split stores bytes after the end-of-archive marker in segments of at most this. */
export const PADDING_CHUNK_SIZE = 1024 * 1024;

/**
 * Cuts what follows a tar's end blocks (padding, trailing bytes) into tar-split
 * segments of at most PADDING_CHUNK_SIZE, as tar-split does. Each emitted segment
 * is a copy: the input chunks may be reused.
 */
export class PaddingSegmenter {
  private parts: Uint8Array[] = [];
  private length = 0;

  constructor(private readonly emit: (segment: Uint8Array) => void) {}

  push(chunk: Uint8Array): void {
    let c = chunk;
    while (c.length > 0) {
      const take = Math.min(c.length, PADDING_CHUNK_SIZE - this.length);
      this.parts.push(c.subarray(0, take));
      this.length += take;
      c = c.subarray(take);
      if (this.length === PADDING_CHUNK_SIZE) this.flush();
    }
  }

  /** Emits the last, shorter segment. */
  end(): void {
    if (this.length > 0) this.flush();
  }

  private flush(): void {
    this.emit(Buffer.concat(this.parts, this.length));
    this.parts = [];
    this.length = 0;
  }
}

export type TarSplitEntry =
  | { type: typeof TARSPLIT_SEGMENT; payload: Uint8Array; position: number }
  | {
      type: typeof TARSPLIT_FILE;
      /** The header name (from `name`, or `name_raw` decoded as latin1 bytes when not UTF-8). */
      name: string;
      nameRaw?: Uint8Array;
      size: number;
      /** CRC-64 (8 bytes), or null for empty payloads. */
      crc: Uint8Array | null;
      position: number;
    };

/** Go's filepath.Clean, which tar-split uses to refuse duplicate paths. */
export function goCleanPath(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const parts: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (parts.length > 0 && parts[parts.length - 1] !== "..") parts.pop();
      else if (!rooted) parts.push("..");
    } else parts.push(seg);
  }
  const out = (rooted ? "/" : "") + parts.join("/");
  return out === "" ? "." : out;
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Builds tar-split lines like tar-split's JSON packer (duplicate cleaned paths refused). */
export class TarSplitPacker {
  private position = 0;
  private readonly seen = new Set<string>();
  /** Total bytes of JSON written. */
  size = 0;

  constructor(private readonly sink: (line: Uint8Array) => void) {}

  segment(payload: Uint8Array): void {
    if (payload.length === 0) return;
    this.emit(`{"type":2,"payload":"${b64(payload)}","position":${this.position}}\n`);
  }

  /** `nameRaw`: the name's bytes when they are not valid UTF-8 (written as `name_raw`). */
  file(name: string, size: number, crc: Uint8Array | null, nameRaw?: Uint8Array): void {
    const clean = goCleanPath(name);
    if (this.seen.has(clean)) {
      throw new RootstockError("CHUNKED_FORMAT", `duplicate path in the tar: ${JSON.stringify(name)}`);
    }
    this.seen.add(clean);
    const sizeField = size > 0 ? `,"size":${size}` : "";
    const payload = crc ? `"${b64(crc)}"` : "null";
    const nameField = nameRaw ? `"name_raw":"${b64(nameRaw)}"` : `"name":${goString(name)}`;
    this.emit(`{"type":1,${nameField}${sizeField},"payload":${payload},"position":${this.position}}\n`);
  }

  private emit(line: string): void {
    const bytes = Buffer.from(line, "utf8");
    this.size += bytes.length;
    this.position++;
    this.sink(bytes);
  }
}

const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeB64(value: unknown, what: string): Uint8Array {
  if (typeof value !== "string" || value.length % 4 !== 0 || !B64_RE.test(value)) {
    throw new RootstockError("CHUNKED_FORMAT", `${what}: payload is not base64`);
  }
  return Buffer.from(value, "base64");
}

/** Parses tar-split JSON lines; positions must run 0, 1, 2, … */
export function* parseTarSplit(data: Uint8Array): Generator<TarSplitEntry> {
  // Line by line from the bytes: one string for the whole stream (megabytes) would
  // take fresh heap pages, each a costly fault here; a line's string is short-lived.
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let position = 0;
  let lineNo = 0;
  let from = 0;
  while (from < bytes.length) {
    let to = bytes.indexOf(0x0a, from);
    if (to < 0) to = bytes.length;
    const line = bytes.toString("utf8", from, to);
    from = to + 1;
    lineNo++;
    if (line.trim() === "") continue;
    const what = `tar-split line ${lineNo}`;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line);
    } catch (err) {
      throw new RootstockError("CHUNKED_FORMAT", `${what}: not JSON`, { cause: err });
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      throw new RootstockError("CHUNKED_FORMAT", `${what}: not an object`);
    }
    if (obj.position !== position) {
      throw new RootstockError(
        "CHUNKED_FORMAT",
        `${what}: position ${String(obj.position)}, expected ${position}`,
      );
    }
    if (obj.type === TARSPLIT_SEGMENT) {
      yield { type: TARSPLIT_SEGMENT, payload: decodeB64(obj.payload ?? "", what), position };
    } else if (obj.type === TARSPLIT_FILE) {
      const size = obj.size ?? 0;
      if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
        throw new RootstockError("CHUNKED_FORMAT", `${what}: bad size`);
      }
      let name: string;
      let nameRaw: Uint8Array | undefined;
      if (obj.name_raw !== undefined && obj.name_raw !== null && obj.name_raw !== "") {
        nameRaw = decodeB64(obj.name_raw, what);
        name = Buffer.from(nameRaw).toString("latin1");
      } else if (typeof obj.name === "string") name = obj.name;
      else throw new RootstockError("CHUNKED_FORMAT", `${what}: file entry without a name`);
      const crc = obj.payload === null || obj.payload === undefined ? null : decodeB64(obj.payload, what);
      if (crc && crc.length !== 8)
        throw new RootstockError("CHUNKED_FORMAT", `${what}: checksum is not 8 bytes`);
      yield nameRaw
        ? { type: TARSPLIT_FILE, name, nameRaw, size, crc, position }
        : { type: TARSPLIT_FILE, name, size, crc, position };
    } else {
      throw new RootstockError("CHUNKED_FORMAT", `${what}: unknown type ${String(obj.type)}`);
    }
    position++;
  }
}

/** Σ segment bytes + Σ file sizes: the size of the tar the tar-split rebuilds. */
export function tarSizeFromTarSplit(entries: Iterable<TarSplitEntry>): number {
  let size = 0;
  for (const e of entries) size += e.type === TARSPLIT_SEGMENT ? e.payload.length : e.size;
  return size;
}

/**
 * Rebuilds the tar: segments as stored, file payloads from `payloadOf` (called once
 * per non-empty file, in order), each checked for size and CRC-64.
 */
export async function* assembleTar(
  entries: Iterable<TarSplitEntry>,
  payloadOf: (name: string, size: number, index: number) => AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  let index = 0;
  for (const e of entries) {
    if (e.type === TARSPLIT_SEGMENT) {
      if (e.payload.length > 0) yield e.payload;
      continue;
    }
    const fileIndex = index++;
    if (e.size === 0) continue;
    const crc = new Crc64();
    let got = 0;
    for await (const chunk of payloadOf(e.name, e.size, fileIndex)) {
      got += chunk.length;
      if (got > e.size) break;
      crc.update(chunk);
      yield chunk;
    }
    if (got !== e.size) {
      throw new RootstockError(
        "SIZE_MISMATCH",
        `tar-split file ${JSON.stringify(e.name)}: expected ${e.size} bytes, got ${got > e.size ? "more" : got}`,
      );
    }
    if (!e.crc || Buffer.compare(crc.digest(), e.crc) !== 0) {
      throw new RootstockError(
        "DIGEST_MISMATCH",
        `tar-split file ${JSON.stringify(e.name)}: file integrity checksum (CRC-64) failed`,
      );
    }
  }
}
