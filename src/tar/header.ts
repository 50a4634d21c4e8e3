/**
 * Pure tar header codec: one 512-byte block ↔ fields, PAX records, numeric fields.
 * Decoding mirrors Go's archive/tar (the reference for zstd:chunked TOCs); encoding
 * is our canonical, deterministic form (ustar when it fits, else sorted PAX records).
 */
import { RootstockError } from "../errors.js";
import type { TarEntryType, TarHeader, TarTime } from "./types.js";

export const BLOCK_SIZE = 512;
/** Go refuses PAX and GNU long-name data larger than this (maxSpecialFileSize). */
export const MAX_SPECIAL_FILE_SIZE = 1 << 20;

export const TYPE_PAX = 0x78; // 'x'
export const TYPE_PAX_GLOBAL = 0x67; // 'g'
export const TYPE_GNU_LONGNAME = 0x4c; // 'L'
export const TYPE_GNU_LONGLINK = 0x4b; // 'K'
export const TYPE_GNU_SPARSE = 0x53; // 'S'

const TYPEFLAG_TO_TYPE: Record<number, TarEntryType> = {
  0: "file",
  48: "file",
  55: "file", // contiguous file: data like a regular file
  49: "hardlink",
  50: "symlink",
  51: "char",
  52: "block",
  53: "dir",
  54: "fifo",
};

const TYPE_TO_TYPEFLAG: Record<TarEntryType, number> = {
  file: 0x30,
  hardlink: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};

/** Go's isHeaderOnlyType: these never carry data, whatever the size field says. */
export function isHeaderOnlyType(type: TarEntryType): boolean {
  return type !== "file";
}

export function typeForTypeflag(typeflag: number): TarEntryType | undefined {
  return TYPEFLAG_TO_TYPE[typeflag];
}

export function typeflagForType(type: TarEntryType): number {
  return TYPE_TO_TYPEFLAG[type];
}

/** Bytes of padding after `size` payload bytes up to the next block boundary. */
export function blockPadding(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK_SIZE; i++) if (block[i] !== 0) return false;
  return true;
}

// ---------- decoding ----------

const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const utf8Lossy = new TextDecoder("utf-8");
const latin1 = new TextDecoder("latin1");

/** Decoded text plus the raw bytes when they are not valid UTF-8. */
export interface DecodedString {
  text: string;
  raw?: Uint8Array;
}

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return false;
  return true;
}

export function decodeString(bytes: Uint8Array): DecodedString {
  if (isAscii(bytes)) return { text: latin1.decode(bytes) };
  try {
    return { text: utf8Strict.decode(bytes) };
  } catch {
    return { text: utf8Lossy.decode(bytes), raw: bytes.slice() };
  }
}

/** Go's parseString: the bytes up to the first NUL. */
export function cString(bytes: Uint8Array): Uint8Array {
  const nul = bytes.indexOf(0);
  return nul < 0 ? bytes : bytes.subarray(0, nul);
}

/** A field-level error; the reader adds which entry and offset it concerns. */
export class FieldError extends Error {}

/** Go's parseOctal: trim spaces/NULs at both ends, cut at NUL, then strict base 8. */
export function parseOctal(field: Uint8Array, what: string): number {
  let start = 0;
  let end = field.length;
  while (start < end && (field[start] === 0x20 || field[start] === 0)) start++;
  while (end > start && (field[end - 1] === 0x20 || field[end - 1] === 0)) end--;
  if (start === end) return 0;
  const text = latin1.decode(cString(field.subarray(start, end)));
  if (!/^[0-7]+$/.test(text)) throw new FieldError(`malformed ${what} field ${JSON.stringify(text)}`);
  const value = Number.parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw new FieldError(`${what} field ${text} (octal) is out of range`);
  return value;
}

/** Go's parseNumeric: base-256 two's complement when the top bit is set, else octal. */
export function parseNumeric(field: Uint8Array, what: string): number {
  if (field.length === 0 || (field[0]! & 0x80) === 0) return parseOctal(field, what);
  const inv = field[0]! & 0x40 ? 0xff : 0;
  let x = 0;
  for (let i = 0; i < field.length; i++) {
    let c = field[i]! ^ inv;
    if (i === 0) c &= 0x7f;
    x = x * 256 + c;
    if (x > Number.MAX_SAFE_INTEGER) throw new FieldError(`base-256 ${what} field is out of range`);
  }
  return inv ? -x - 1 : x;
}

/** Which header layout the magic announces (Go's getFormat, after the checksum). */
export type HeaderFormat = "v7" | "ustar" | "gnu" | "star";

/** One decoded header block, before PAX / GNU long-name records are applied. */
export interface RawHeader {
  typeflag: number;
  format: HeaderFormat;
  /** Name bytes, ustar prefix already joined. */
  name: Uint8Array;
  linkname: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  atime?: number;
  ctime?: number;
}

const te = new TextEncoder();
const MAGIC_USTAR = te.encode("ustar\0");
const MAGIC_GNU = te.encode("ustar ");
const VERSION_GNU = te.encode(" \0");
const TRAILER_STAR = te.encode("tar\0");

function bytesEqual(a: Uint8Array, aStart: number, b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (a[aStart + i] !== b[i]) return false;
  return true;
}

/** The name field as text, for error messages about a block we could not decode. */
export function blockNameForMessage(block: Uint8Array): string {
  return decodeString(cString(block.subarray(0, 100))).text;
}

/** Verifies the checksum (unsigned or signed sum, as Go) and decodes one header block. */
export function decodeHeaderBlock(block: Uint8Array): RawHeader {
  const stored = parseOctalChecksum(block);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += c;
    signed += c >= 0x80 ? c - 256 : c;
  }
  if (stored === undefined || (stored !== unsigned && stored !== signed)) {
    const text = latin1.decode(cString(block.subarray(148, 156))).trim();
    throw new FieldError(`wrong header checksum ${JSON.stringify(text)} (computed ${unsigned.toString(8)})`);
  }

  let format: HeaderFormat = "v7";
  if (bytesEqual(block, 257, MAGIC_USTAR)) format = bytesEqual(block, 508, TRAILER_STAR) ? "star" : "ustar";
  else if (bytesEqual(block, 257, MAGIC_GNU) && bytesEqual(block, 263, VERSION_GNU)) format = "gnu";

  const f = (start: number, len: number) => block.subarray(start, start + len);
  const header: RawHeader = {
    typeflag: block[156]!,
    format,
    name: cString(f(0, 100)),
    linkname: cString(f(157, 100)),
    size: parseNumeric(f(124, 12), "size"),
    mode: parseNumeric(f(100, 8), "mode"),
    uid: parseNumeric(f(108, 8), "uid"),
    gid: parseNumeric(f(116, 8), "gid"),
    mtime: parseNumeric(f(136, 12), "mtime"),
    uname: "",
    gname: "",
    devmajor: 0,
    devminor: 0,
  };
  if (format === "v7") return header;

  header.uname = decodeString(cString(f(265, 32))).text;
  header.gname = decodeString(cString(f(297, 32))).text;
  header.devmajor = parseNumeric(f(329, 8), "devmajor");
  header.devminor = parseNumeric(f(337, 8), "devminor");

  let prefix: Uint8Array = new Uint8Array(0);
  if (format === "ustar") {
    prefix = cString(f(345, 155));
  } else if (format === "star") {
    prefix = cString(f(345, 131));
    header.atime = parseNumeric(f(476, 12), "atime");
    header.ctime = parseNumeric(f(488, 12), "ctime");
  } else {
    // GNU keeps atime/ctime where ustar has its prefix; Go reads them only when set,
    // and falls back to a prefix for pre-Go1.8 archives whose fields do not parse.
    try {
      if (block[345] !== 0) header.atime = parseNumeric(f(345, 12), "atime");
      if (block[357] !== 0) header.ctime = parseNumeric(f(357, 12), "ctime");
    } catch {
      header.atime = undefined;
      header.ctime = undefined;
      const candidate = cString(f(345, 155));
      if (isAscii(candidate)) prefix = candidate;
    }
  }
  if (prefix.length > 0) {
    const joined = new Uint8Array(prefix.length + 1 + header.name.length);
    joined.set(prefix);
    joined[prefix.length] = 0x2f;
    joined.set(header.name, prefix.length + 1);
    header.name = joined;
  }
  return header;
}

function parseOctalChecksum(block: Uint8Array): number | undefined {
  try {
    return parseOctal(block.subarray(148, 156), "checksum");
  } catch {
    return undefined;
  }
}

/** PAX records in archive order; a repeated key keeps its first position and last value (Go's map). */
export type PaxRecords = Map<string, Uint8Array>;

const NO_NUL_VALUE_KEYS = new Set(["path", "linkpath", "uname", "gname"]);

/** Go's parsePAX / parsePAXRecord: "%d %s=%s\n" records, length counting itself. */
export function parsePaxRecords(data: Uint8Array): PaxRecords {
  const records: PaxRecords = new Map();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) throw new FieldError(`PAX record at byte ${pos} has no length`);
    const lengthText = latin1.decode(data.subarray(pos, space));
    const length = /^[0-9]+$/.test(lengthText) ? Number(lengthText) : Number.NaN;
    if (!(length >= 5) || length > data.length - pos || length <= space - pos + 1) {
      throw new FieldError(`PAX record at byte ${pos} has a wrong length ${JSON.stringify(lengthText)}`);
    }
    const end = pos + length;
    if (data[end - 1] !== 0x0a) {
      throw new FieldError(`PAX record at byte ${pos} with length ${length} does not end in a newline`);
    }
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new FieldError(`PAX record at byte ${pos} has no key`);
    const keyBytes = record.subarray(0, eq);
    const value = record.subarray(eq + 1);
    const key = decodeString(keyBytes).text;
    if (keyBytes.includes(0) || (NO_NUL_VALUE_KEYS.has(key) && value.includes(0))) {
      throw new FieldError(`PAX record ${JSON.stringify(key)} contains a NUL byte`);
    }
    records.set(key, value.slice());
    pos = end;
  }
  return records;
}

/** Go's parsePAXTime: "sec[.frac]", fraction right-padded or truncated to nanoseconds. */
export function parsePaxTime(text: string, what: string): TarTime {
  const match = /^([+-]?)([0-9]+)(?:\.([0-9]*))?$/.exec(text);
  if (!match) throw new FieldError(`malformed PAX ${what} ${JSON.stringify(text)}`);
  const negative = match[1] === "-";
  const whole = Number(match[2]);
  if (!Number.isSafeInteger(whole)) throw new FieldError(`PAX ${what} ${text} is out of range`);
  const nsec = Number(`${match[3] ?? ""}000000000`.slice(0, 9));
  if (!negative) return { sec: whole, nsec };
  // -1.5 means 1.5 s before the epoch: sec -2, nsec 0.5e9.
  return nsec === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1_000_000_000 - nsec };
}

export function parsePaxInteger(text: string, what: string): number {
  if (!/^[+-]?[0-9]+$/.test(text)) throw new FieldError(`malformed PAX ${what} ${JSON.stringify(text)}`);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new FieldError(`PAX ${what} ${text} is out of range`);
  return value;
}

export const XATTR_PREFIX = "SCHILY.xattr.";

// ---------- encoding ----------

const OCTAL_LIMIT = { 8: 8 ** 7, 12: 8 ** 11 } as const;

function fitsOctal(value: number, width: 8 | 12): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value < OCTAL_LIMIT[width];
}

function putOctal(block: Uint8Array, start: number, width: number, value: number): void {
  // Digit by digit from the right, zero-padded (value < 8^(width-1), checked by callers):
  // no string per field, nine fields per header.
  let v = value;
  for (let i = start + width - 2; i >= start; i--) {
    block[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  block[start + width - 1] = 0;
}

function putBytes(block: Uint8Array, start: number, width: number, bytes: Uint8Array): void {
  block.set(bytes.length > width ? bytes.subarray(0, width) : bytes, start);
}

/** Go's toASCII: drop non-ASCII bytes (used for fields a PAX record overrides). */
function toAscii(bytes: Uint8Array): Uint8Array {
  return isAscii(bytes) ? bytes : bytes.filter((b) => b < 0x80);
}

function setChecksum(block: Uint8Array): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += block[i]!;
  putOctal(block, 148, 7, sum); // six digits, NUL, and the space already there
}

/** Go's splitUSTARPath: prefix ≤ 155 and name ≤ 100 bytes, split at a slash. */
function splitUstarPath(name: Uint8Array): [prefix: Uint8Array, name: Uint8Array] | undefined {
  let length = name.length;
  if (length <= 100 || !isAscii(name)) return undefined;
  if (length > 156) length = 156;
  else if (name[length - 1] === 0x2f) length--;
  const i = name.subarray(0, length).lastIndexOf(0x2f);
  const nameLength = name.length - i - 1;
  if (i <= 0 || nameLength > 100 || nameLength === 0 || i > 155) return undefined;
  return [name.subarray(0, i), name.subarray(i + 1)];
}

/** Go's formatPAXTime. */
export function formatPaxTime(time: TarTime): string {
  if (time.nsec === 0) return String(time.sec);
  let { sec, nsec } = time;
  let sign = "";
  if (sec < 0) {
    sign = "-";
    sec = -(sec + 1);
    nsec = 1_000_000_000 - nsec;
  }
  return `${sign}${sec}.${String(nsec).padStart(9, "0")}`.replace(/0+$/, "");
}

function encodePaxRecord(key: Uint8Array, value: Uint8Array): Uint8Array {
  const body = key.length + value.length + 3; // " ", "=", "\n"
  let length = body + String(body).length;
  if (String(length).length !== String(length - body).length) length = body + String(length).length;
  const prefix = te.encode(`${length} `);
  const out = new Uint8Array(length);
  out.set(prefix);
  out.set(key, prefix.length);
  out[prefix.length + key.length] = 0x3d;
  out.set(value, prefix.length + key.length + 1);
  out[length - 1] = 0x0a;
  return out;
}

function invalid(header: TarHeader, message: string): RootstockError {
  return new RootstockError("INVALID_ARGUMENT", `tar entry ${JSON.stringify(header.name)}: ${message}`);
}

function checkTime(header: TarHeader, time: TarTime, what: string): void {
  if (
    !Number.isSafeInteger(time.sec) ||
    !Number.isInteger(time.nsec) ||
    time.nsec < 0 ||
    time.nsec > 999_999_999
  ) {
    throw invalid(header, `${what} ${JSON.stringify(time)} is not a valid time`);
  }
}

/**
 * Encodes a header canonically: a ustar block when every field fits, preceded by one
 * PAX 'x' header (records sorted by key) for whatever does not: names and links that
 * are long or not ASCII, ids ≥ 2^21, sizes ≥ 8 GiB, fractional or negative times,
 * atime/ctime, xattrs. Deterministic: the same header always gives the same bytes.
 */
export function encodeHeader(header: TarHeader): Uint8Array {
  const pax = new Map<string, Uint8Array>();
  // From Buffer's shared pool: a fresh 512-byte Uint8Array or TextEncoder result each
  // gets its own backing store, which cost more than the rest of the encoding.
  const block = Buffer.allocUnsafe(BLOCK_SIZE).fill(0);

  const name = header.nameRaw ?? Buffer.from(header.name, "utf8");
  if (name.length === 0) throw invalid(header, "empty name");
  if (name.includes(0)) throw invalid(header, "name contains a NUL byte");
  if (name.length <= 100 && isAscii(name)) {
    putBytes(block, 0, 100, name);
  } else {
    const split = splitUstarPath(name);
    if (split) {
      putBytes(block, 345, 155, split[0]);
      putBytes(block, 0, 100, split[1]);
    } else {
      pax.set("path", name);
      putBytes(block, 0, 100, toAscii(name));
    }
  }

  const linkname = header.linknameRaw ?? Buffer.from(header.linkname, "utf8");
  if (linkname.includes(0)) throw invalid(header, "link target contains a NUL byte");
  if (linkname.length > 100 || !isAscii(linkname)) pax.set("linkpath", linkname);
  putBytes(block, 157, 100, toAscii(linkname));

  for (const [key, value, start] of [
    ["uname", header.uname, 265],
    ["gname", header.gname, 297],
  ] as const) {
    if (value === "") continue; // numeric owners: nothing to write
    const bytes = te.encode(value);
    if (bytes.includes(0)) throw invalid(header, `${key} contains a NUL byte`);
    if (bytes.length > 32 || !isAscii(bytes)) pax.set(key, bytes);
    putBytes(block, start, 32, toAscii(bytes));
  }

  if (!fitsOctal(header.mode, 8)) throw invalid(header, `mode ${header.mode} does not fit a tar header`);
  putOctal(block, 100, 8, header.mode);
  for (const [key, value, start] of [
    ["uid", header.uid, 108],
    ["gid", header.gid, 116],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw invalid(header, `${key} ${value} is not a valid id`);
    if (fitsOctal(value, 8)) putOctal(block, start, 8, value);
    else {
      pax.set(key, te.encode(String(value)));
      putOctal(block, start, 8, 0);
    }
  }

  const size = isHeaderOnlyType(header.type) ? 0 : header.size;
  if (!Number.isSafeInteger(size) || size < 0) throw invalid(header, `size ${size} is not valid`);
  if (fitsOctal(size, 12)) putOctal(block, 124, 12, size);
  else {
    pax.set("size", te.encode(String(size)));
    putOctal(block, 124, 12, 0);
  }

  checkTime(header, header.mtime, "mtime");
  if (header.mtime.nsec === 0 && fitsOctal(header.mtime.sec, 12)) putOctal(block, 136, 12, header.mtime.sec);
  else {
    pax.set("mtime", te.encode(formatPaxTime(header.mtime)));
    putOctal(block, 136, 12, fitsOctal(header.mtime.sec, 12) ? header.mtime.sec : 0);
  }
  if (header.atime) {
    checkTime(header, header.atime, "atime");
    pax.set("atime", te.encode(formatPaxTime(header.atime)));
  }
  if (header.ctime) {
    checkTime(header, header.ctime, "ctime");
    pax.set("ctime", te.encode(formatPaxTime(header.ctime)));
  }

  for (const [key, value, start] of [
    ["devmajor", header.devmajor, 329],
    ["devminor", header.devminor, 337],
  ] as const) {
    if (!fitsOctal(value, 8)) throw invalid(header, `${key} ${value} does not fit a tar header`);
    putOctal(block, start, 8, value);
  }

  for (const [xattr, value] of header.xattrs) {
    if (xattr.length === 0 || xattr.includes("=") || xattr.includes("\0")) {
      throw invalid(header, `xattr name ${JSON.stringify(xattr)} cannot be stored in a PAX record`);
    }
    pax.set(XATTR_PREFIX + xattr, value);
  }

  block[156] = typeflagForType(header.type);
  block.set(MAGIC_USTAR, 257);
  block[263] = 0x30;
  block[264] = 0x30;
  setChecksum(block);
  if (pax.size === 0) return block;

  const paxData = encodePaxData(header, pax);
  const paxHeader = new Uint8Array(BLOCK_SIZE);
  putBytes(paxHeader, 0, 100, paxHeaderName(name));
  putOctal(paxHeader, 100, 8, 0o644);
  putOctal(paxHeader, 108, 8, 0);
  putOctal(paxHeader, 116, 8, 0);
  putOctal(paxHeader, 124, 12, paxData.length);
  putOctal(paxHeader, 136, 12, 0);
  paxHeader[156] = TYPE_PAX;
  paxHeader.set(MAGIC_USTAR, 257);
  paxHeader[263] = 0x30;
  paxHeader[264] = 0x30;
  putOctal(paxHeader, 329, 8, 0);
  putOctal(paxHeader, 337, 8, 0);
  setChecksum(paxHeader);

  const padded = paxData.length + blockPadding(paxData.length);
  const out = new Uint8Array(BLOCK_SIZE + padded + BLOCK_SIZE);
  out.set(paxHeader, 0);
  out.set(paxData, BLOCK_SIZE);
  out.set(block, BLOCK_SIZE + padded);
  return out;
}

function encodePaxData(header: TarHeader, pax: Map<string, Uint8Array>): Uint8Array {
  // Sort by the keys' UTF-8 bytes so the order never depends on JS string collation.
  const entries = [...pax].map(([key, value]) => [te.encode(key), value] as const);
  entries.sort((a, b) => Buffer.compare(a[0], b[0]));
  const records = entries.map(([key, value]) => encodePaxRecord(key, value));
  const total = records.reduce((n, r) => n + r.length, 0);
  if (total > MAX_SPECIAL_FILE_SIZE) {
    throw invalid(
      header,
      `PAX records take ${total} bytes, more than readers accept (${MAX_SPECIAL_FILE_SIZE})`,
    );
  }
  const data = new Uint8Array(total);
  let pos = 0;
  for (const r of records) {
    data.set(r, pos);
    pos += r.length;
  }
  return data;
}

/** Go's naming of the 'x' header: DIR/PaxHeaders.0/BASE, ASCII only, at most 100 bytes. */
function paxHeaderName(name: Uint8Array): Uint8Array {
  let end = name.length;
  while (end > 1 && name[end - 1] === 0x2f) end--;
  const trimmed = name.subarray(0, end);
  const slash = trimmed.lastIndexOf(0x2f);
  const dir = slash >= 0 ? trimmed.subarray(0, slash + 1) : new Uint8Array(0);
  const base = trimmed.subarray(slash + 1);
  const marker = te.encode("PaxHeaders.0/");
  const joined = new Uint8Array(dir.length + marker.length + base.length);
  joined.set(dir);
  joined.set(marker, dir.length);
  joined.set(base, dir.length + marker.length);
  const ascii = toAscii(joined);
  return ascii.length > 100 ? ascii.subarray(0, 100) : ascii;
}

/** Two zero blocks: the end-of-archive marker. */
export const END_OF_ARCHIVE = new Uint8Array(2 * BLOCK_SIZE);
