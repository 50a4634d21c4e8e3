/**
 * The cpio "newc" codec (SVR4 portable ASCII, magic 070701), the format the Linux
 * kernel unpacks as an initramfs. The writer is deterministic: entries sorted by
 * path bytes, inode numbers counted from 1 in that order, archive dev 0, padded to
 * 512 bytes like GNU cpio; the same entries always give the same bytes. The reader
 * also takes 070702 (newc with a byte-sum checksum) and turns newc hardlinks back
 * into tar semantics (first a file with the data, then links naming it).
 *
 * newc has no xattrs, no sub-second mtimes, no user/group names, 32-bit sizes and
 * times; see README.md for what an initrd loses.
 */
import { readFile } from "node:fs/promises";
import { RootstockError } from "../errors.js";
import type { ProgressSink } from "../progress.js";
import type { TarEntryType, TarHeader } from "../tar/types.js";
import { ByteReader } from "./byte-reader.js";
import {
  cleanEntryPath,
  comparePaths,
  type ExportEntry,
  missingContent,
  parentPath,
  sizedContent,
} from "./entry.js";

export const NEWC_MAGIC = "070701";
export const NEWC_CRC_MAGIC = "070702";
export const NEWC_TRAILER = "TRAILER!!!";
const HEADER_SIZE = 110;
/** The kernel refuses names longer than PATH_MAX (4096 with the NUL). */
const MAX_NAME_BYTES = 4095;
const MAX_U32 = 0xffffffff;
const READ_AHEAD_FILES = 16;
const READ_AHEAD_MAX_BYTES = 1 << 20;

const S_IFMT = 0o170000;
const TYPE_BITS: Record<TarEntryType, number> = {
  fifo: 0o010000,
  char: 0o020000,
  dir: 0o040000,
  block: 0o060000,
  file: 0o100000,
  hardlink: 0o100000,
  symlink: 0o120000,
};
const TYPEFLAG: Record<TarEntryType, number> = {
  file: 0x30,
  hardlink: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};

/** One newc header as stored (mode includes the S_IFMT type bits). */
export interface NewcHeader {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  devmajor: number;
  devminor: number;
  rdevmajor: number;
  rdevminor: number;
  /** Byte sum of the data for 070702; 0 for 070701. */
  check: number;
}

const align4 = (n: number) => (n + 3) & ~3;

function hex8(value: number, field: string, name: string): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `cpio entry ${JSON.stringify(name)}: ${field} ${value} does not fit newc's 32-bit field`,
    );
  }
  return value.toString(16).toUpperCase().padStart(8, "0");
}

/** Header + name + NUL, padded to a multiple of 4. */
export function encodeNewcHeader(h: NewcHeader, magic = NEWC_MAGIC): Buffer {
  const name = Buffer.from(h.name);
  const namesize = name.length + 1;
  const fields = [
    hex8(h.ino, "inode", h.name),
    hex8(h.mode, "mode", h.name),
    hex8(h.uid, "uid", h.name),
    hex8(h.gid, "gid", h.name),
    hex8(h.nlink, "nlink", h.name),
    hex8(h.mtime, "mtime", h.name),
    hex8(h.size, "size", h.name),
    hex8(h.devmajor, "devmajor", h.name),
    hex8(h.devminor, "devminor", h.name),
    hex8(h.rdevmajor, "rdevmajor", h.name),
    hex8(h.rdevminor, "rdevminor", h.name),
    hex8(namesize, "namesize", h.name),
    hex8(h.check, "check", h.name),
  ];
  const out = Buffer.alloc(align4(HEADER_SIZE + namesize));
  out.write(magic + fields.join(""), 0, "latin1");
  name.copy(out, HEADER_SIZE);
  return out;
}

export interface CpioWriteOptions {
  /** No mtime above this (SOURCE_DATE_EPOCH); times before 1970 always become 0. */
  mtimeClamp?: number;
  /** Pad the archive to a multiple of this many bytes; 512 like GNU cpio, 0 for none. */
  blockSize?: number;
  progress?: ProgressSink;
}

/** A planned archive member: its header and, on the member that carries them, the bytes. */
export interface CpioRecord {
  header: NewcHeader;
  /** The entry whose content is the data (regular files: the last link of the inode). */
  content?: ExportEntry;
  /** Symlink target bytes. */
  data?: Uint8Array;
}

/**
 * Orders entries and gives them newc headers: sorted by path bytes (parents first),
 * inodes numbered from 1 in that order, hardlinks sharing the inode of their file
 * with the data on the last link (what GNU cpio writes and both GNU cpio and the
 * kernel read), directories with nlink 2 + subdirectories. Refuses unsafe or
 * duplicate paths, hardlinks to nothing, and values newc cannot hold.
 */
export function planCpio(entries: Iterable<ExportEntry>, opts: CpioWriteOptions = {}): CpioRecord[] {
  const byPath = new Map<string, ExportEntry>();
  for (const entry of entries) {
    const path = cleanEntryPath(entry.path);
    if (byPath.has(path)) {
      throw new RootstockError("INVALID_ARGUMENT", `cpio entry ${JSON.stringify(path)}: duplicate entry`);
    }
    if (Buffer.byteLength(path) > MAX_NAME_BYTES) {
      throw new RootstockError("INVALID_ARGUMENT", `cpio entry ${JSON.stringify(path)}: name too long`);
    }
    byPath.set(path, entry);
  }
  const paths = [...byPath.keys()].sort(comparePaths);

  // Hard link groups: every link names the file entry that holds the content.
  const groupOf = new Map<string, string>();
  const members = new Map<string, string[]>();
  for (const path of paths) {
    const entry = byPath.get(path)!;
    if (entry.type === "file") {
      groupOf.set(path, path);
      members.set(path, [path]);
    }
  }
  for (const path of paths) {
    const entry = byPath.get(path)!;
    if (entry.type !== "hardlink") continue;
    const target = cleanEntryPath(entry.linkTarget ?? "", `cpio hardlink ${JSON.stringify(path)} target`);
    const file = byPath.get(target)?.type === "file" ? target : undefined;
    if (!file) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `cpio entry ${JSON.stringify(path)}: hardlink target ${JSON.stringify(target)} is not a regular file in the archive`,
      );
    }
    groupOf.set(path, file);
    members.get(file)!.push(path);
  }
  const lastMember = new Map<string, string>();
  for (const [file, list] of members) lastMember.set(file, list.sort(comparePaths).at(-1)!);

  const subdirs = new Map<string, number>();
  for (const path of paths) {
    if (path !== "." && byPath.get(path)!.type === "dir") {
      const parent = parentPath(path);
      subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
    }
  }

  const inoOf = new Map<string, number>();
  let nextIno = 1;
  const records: CpioRecord[] = [];
  for (const path of paths) {
    const entry = byPath.get(path)!;
    const group = groupOf.get(path);
    let ino: number;
    if (group !== undefined) {
      ino = inoOf.get(group) ?? nextIno++;
      inoOf.set(group, ino);
    } else {
      ino = nextIno++;
    }
    const source = group !== undefined ? byPath.get(group)! : entry;
    let mtime = Math.max(0, source.mtime.sec);
    if (opts.mtimeClamp !== undefined) mtime = Math.min(mtime, opts.mtimeClamp);
    const header: NewcHeader = {
      name: path,
      ino,
      mode: TYPE_BITS[entry.type] | (source.mode & 0o7777),
      uid: source.uid,
      gid: source.gid,
      nlink: 1,
      mtime,
      size: 0,
      devmajor: 0,
      devminor: 0,
      rdevmajor: 0,
      rdevminor: 0,
      check: 0,
    };
    const record: CpioRecord = { header };
    switch (entry.type) {
      case "file":
      case "hardlink": {
        header.nlink = members.get(group!)!.length;
        if (lastMember.get(group!) === path) {
          header.size = source.size;
          if (source.size > 0) record.content = source;
        }
        break;
      }
      case "dir":
        header.nlink = 2 + (subdirs.get(path) ?? 0);
        break;
      case "symlink": {
        const target = Buffer.from(entry.linkTarget ?? "");
        if (target.length === 0 || target.includes(0) || target.length > MAX_NAME_BYTES) {
          throw new RootstockError(
            "INVALID_ARGUMENT",
            `cpio entry ${JSON.stringify(path)}: symlink target must be 1..${MAX_NAME_BYTES} bytes without NUL`,
          );
        }
        header.size = target.length;
        record.data = target;
        break;
      }
      case "char":
      case "block":
        header.rdevmajor = entry.devmajor ?? 0;
        header.rdevminor = entry.devminor ?? 0;
        break;
      case "fifo":
        break;
    }
    // Validate every field now, so a bad entry fails before any byte is written.
    encodeNewcHeader(header);
    records.push(record);
  }
  return records;
}

/** Gathers small pieces into large chunks so a many-small-files archive is not a syscall per header. */
class Coalescer {
  private pieces: Uint8Array[] = [];
  private bytes = 0;
  constructor(private readonly limit = 256 * 1024) {}
  push(piece: Uint8Array): Uint8Array | undefined {
    this.pieces.push(piece);
    this.bytes += piece.length;
    return this.bytes >= this.limit ? this.flush() : undefined;
  }
  flush(): Uint8Array | undefined {
    if (this.bytes === 0) return undefined;
    const out = this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, this.bytes);
    this.pieces = [];
    this.bytes = 0;
    return out;
  }
}

/**
 * Streams a newc archive of `entries`. The metadata is planned up front (hardlinks
 * need it); file contents are opened one at a time, in order, and each must yield
 * exactly its declared size (SIZE_MISMATCH naming the entry).
 */
export async function* writeCpio(
  entries: Iterable<ExportEntry>,
  opts: CpioWriteOptions = {},
): AsyncGenerator<Uint8Array> {
  const records = planCpio(entries, opts);
  const progress = opts.progress;
  progress?.({ type: "start", id: "cpio", label: "cpio", total: records.length, unit: "files" });
  const out = new Coalescer();
  let written = 0;
  const emit = function* (piece: Uint8Array) {
    written += piece.length;
    const full = out.push(piece);
    if (full) yield full;
  };
  // Small files from disk are read a few records ahead, so the archive is not one open/read/close round trip at a time.
  const ahead = new Map<number, Promise<Uint8Array>>();
  let scheduled = 0;
  const readAhead = (upTo: number) => {
    for (; scheduled < records.length && scheduled <= upTo; scheduled++) {
      const content = records[scheduled]!.content;
      if (content?.content?.kind === "path" && content.size <= READ_AHEAD_MAX_BYTES) {
        const path = content.content.path;
        const pending = readFile(path).catch((err: unknown) => {
          throw missingContent(err, path, content.path);
        });
        pending.catch(() => {});
        ahead.set(scheduled, pending);
      }
    }
  };
  let done = 0;
  for (const [index, record] of records.entries()) {
    readAhead(index + READ_AHEAD_FILES);
    yield* emit(encodeNewcHeader(record.header));
    const early = ahead.get(index);
    if (early && record.content) {
      ahead.delete(index);
      const data = await early;
      if (data.length !== record.content.size) {
        throw new RootstockError(
          "SIZE_MISMATCH",
          `entry ${JSON.stringify(record.content.path)}: content has ${data.length} bytes, declared ${record.content.size}`,
        );
      }
      yield* emit(data);
    } else if (record.data) {
      yield* emit(record.data);
    } else if (record.content) {
      for await (const chunk of sizedContent(record.content)) {
        if (chunk.length >= 64 * 1024) {
          const pending = out.flush();
          if (pending) yield pending;
          written += chunk.length;
          yield chunk;
        } else {
          yield* emit(chunk);
        }
      }
    }
    const pad = align4(record.header.size) - record.header.size;
    if (pad > 0) yield* emit(new Uint8Array(pad));
    if (++done % 1000 === 0) progress?.({ type: "advance", id: "cpio", current: done });
  }
  yield* emit(
    encodeNewcHeader({
      name: NEWC_TRAILER,
      ino: 0,
      mode: 0,
      uid: 0,
      gid: 0,
      nlink: 1,
      mtime: 0,
      size: 0,
      devmajor: 0,
      devminor: 0,
      rdevmajor: 0,
      rdevminor: 0,
      check: 0,
    }),
  );
  const block = opts.blockSize ?? 512;
  if (block > 1 && written % block !== 0) yield* emit(new Uint8Array(block - (written % block)));
  const rest = out.flush();
  if (rest) yield rest;
  progress?.({ type: "done", id: "cpio", summary: `${records.length} entries` });
}

// ---------------------------------------------------------------------------------
// Reader

/** One entry read from a cpio archive, in the tar data model the tree module consumes. */
export interface CpioEntry {
  header: TarHeader;
  /** The newc fields as stored: inode, link count, archive device. */
  newc: NewcHeader;
  /** Regular file data (empty for other types): read it before asking for the next entry, or it is skipped. */
  payload: AsyncIterable<Uint8Array>;
}

export interface CpioReadOptions {
  /** Most hardlink members held while waiting for the link that carries the data. */
  maxPendingLinks?: number;
}

const HEX8 = /^[0-9a-fA-F]{8}$/;
const FIELD_NAMES = [
  "ino",
  "mode",
  "uid",
  "gid",
  "nlink",
  "mtime",
  "size",
  "devmajor",
  "devminor",
  "rdevmajor",
  "rdevminor",
  "namesize",
  "check",
] as const;

function formatError(message: string): RootstockError {
  return new RootstockError("INVALID_FORMAT", `cpio: ${message}`);
}

function typeOfMode(mode: number, name: string): TarEntryType {
  switch (mode & S_IFMT) {
    case 0o100000:
      return "file";
    case 0o040000:
      return "dir";
    case 0o120000:
      return "symlink";
    case 0o020000:
      return "char";
    case 0o060000:
      return "block";
    case 0o010000:
      return "fifo";
    case 0o140000:
      throw formatError(`entry ${JSON.stringify(name)}: sockets cannot be extracted`);
    default:
      throw formatError(`entry ${JSON.stringify(name)}: unknown file type in mode ${mode.toString(8)}`);
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Text of a name, and its bytes when they are not valid UTF-8 (as the tar reader reports them). */
function decodeName(bytes: Uint8Array): { text: string; raw?: Uint8Array } {
  try {
    return { text: strictUtf8.decode(bytes) };
  } catch {
    return { text: Buffer.from(bytes).toString("utf8"), raw: Uint8Array.from(bytes) };
  }
}

function toTarHeader(
  h: NewcHeader & { nameRaw?: Uint8Array },
  type: TarEntryType,
  linkname: string,
  linknameRaw?: Uint8Array,
): TarHeader {
  return {
    name: h.name,
    ...(h.nameRaw ? { nameRaw: h.nameRaw } : {}),
    linkname,
    ...(linknameRaw ? { linknameRaw } : {}),
    type,
    typeflag: TYPEFLAG[type],
    mode: h.mode & 0o7777,
    uid: h.uid,
    gid: h.gid,
    uname: "",
    gname: "",
    size: type === "file" ? h.size : 0,
    mtime: { sec: h.mtime, nsec: 0 },
    devmajor: type === "char" || type === "block" ? h.rdevmajor : 0,
    devminor: type === "char" || type === "block" ? h.rdevminor : 0,
    xattrs: [],
  };
}

const noBody: AsyncIterable<Uint8Array> = { async *[Symbol.asyncIterator]() {} };

/**
 * Reads a newc (070701) or newc-crc (070702) archive up to its TRAILER!!!. Memory
 * stays bounded: bodies stream through, names and symlink targets are capped at
 * PATH_MAX, and at most `maxPendingLinks` hardlink headers wait for their data.
 * Hardlinks come out the tar way: the member carrying the data as a "file", every
 * other member as a "hardlink" naming it (members that never get data: an empty
 * file and links to it, as GNU cpio extracts them). Malformed input throws
 * INVALID_FORMAT naming the entry or byte offset.
 */
export async function* readCpio(
  source: AsyncIterable<Uint8Array>,
  opts: CpioReadOptions = {},
): AsyncGenerator<CpioEntry> {
  const reader = new ByteReader(source);
  try {
    yield* readCpioEntries(reader, opts);
  } finally {
    // The trailer ends the archive before the source does (padding): close it, or a
    // file source keeps its descriptor until garbage collection.
    await reader.close();
  }
}

async function* readCpioEntries(reader: ByteReader, opts: CpioReadOptions): AsyncGenerator<CpioEntry> {
  const maxPending = opts.maxPendingLinks ?? 100_000;
  // Hardlink groups by (archive dev, inode): the member that holds the data, or members waiting for it.
  const groups = new Map<string, { carrier?: string; waiting: NewcHeader[]; seen: number }>();
  let pending = 0;

  const linkEntry = (h: NewcHeader, target: string): CpioEntry => ({
    header: toTarHeader(h, "hardlink", target),
    newc: h,
    payload: noBody,
  });

  for (;;) {
    const at = reader.position;
    const raw = await reader.read(HEADER_SIZE);
    if (raw.length < HEADER_SIZE) {
      throw formatError(`truncated at byte ${at}: the archive ends without ${NEWC_TRAILER}`);
    }
    const text = Buffer.from(raw).toString("latin1");
    const magic = text.slice(0, 6);
    if (magic !== NEWC_MAGIC && magic !== NEWC_CRC_MAGIC) {
      const hint = magic === "070707" ? " (odc format: only newc is supported)" : "";
      throw formatError(`bad magic ${JSON.stringify(magic)} at byte ${at}${hint}`);
    }
    const values: number[] = [];
    for (let i = 0; i < FIELD_NAMES.length; i++) {
      const field = text.slice(6 + i * 8, 14 + i * 8);
      if (!HEX8.test(field)) {
        throw formatError(`header at byte ${at}: field ${FIELD_NAMES[i]} is not 8 hex digits`);
      }
      values.push(Number.parseInt(field, 16));
    }
    const [
      ino,
      mode,
      uid,
      gid,
      nlink,
      mtime,
      size,
      devmajor,
      devminor,
      rdevmajor,
      rdevminor,
      namesize,
      check,
    ] = values as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    if (namesize < 2 || namesize > MAX_NAME_BYTES + 1) {
      throw formatError(`header at byte ${at}: name size ${namesize} out of range 2..${MAX_NAME_BYTES + 1}`);
    }
    const nameBytes = await reader.read(namesize);
    if (nameBytes.length < namesize) throw formatError(`truncated in the name of the entry at byte ${at}`);
    const nul = nameBytes.indexOf(0);
    const decoded = decodeName(nameBytes.subarray(0, nul < 0 ? namesize : nul));
    const name = decoded.text;
    if (nul !== namesize - 1) {
      throw formatError(
        `entry ${JSON.stringify(name)} at byte ${at}: name contains NUL or lacks its terminator`,
      );
    }
    const namePad = align4(HEADER_SIZE + namesize) - HEADER_SIZE - namesize;
    if ((await reader.read(namePad)).length < namePad)
      throw formatError(`truncated after entry ${JSON.stringify(name)}`);
    if (name === NEWC_TRAILER) break;

    const h: NewcHeader & { nameRaw?: Uint8Array } = {
      name,
      ...(decoded.raw ? { nameRaw: decoded.raw } : {}),
      ino,
      mode,
      uid,
      gid,
      nlink,
      mtime,
      size,
      devmajor,
      devminor,
      rdevmajor,
      rdevminor,
      check,
    };
    const type = typeOfMode(mode, name);
    const shown = JSON.stringify(name);
    const dataPad = align4(size) - size;
    const skipPad = async () => {
      if ((await reader.read(dataPad)).length < dataPad) throw formatError(`truncated after entry ${shown}`);
    };

    if (type !== "file") {
      if (type === "symlink") {
        if (size < 1 || size > MAX_NAME_BYTES)
          throw formatError(`entry ${shown}: symlink target size ${size}`);
        const target = await reader.read(size);
        if (target.length < size) throw formatError(`truncated in the symlink target of entry ${shown}`);
        if (target.includes(0)) throw formatError(`entry ${shown}: symlink target contains NUL`);
        await skipPad();
        yield {
          header: toTarHeader(h, "symlink", Buffer.from(target).toString("utf8")),
          newc: h,
          payload: noBody,
        };
      } else {
        if (size !== 0) throw formatError(`entry ${shown}: a ${type} entry declares ${size} bytes of data`);
        yield { header: toTarHeader(h, type, ""), newc: h, payload: noBody };
      }
      continue;
    }

    const key = `${devmajor}:${devminor}:${ino}`;
    const group = nlink > 1 ? (groups.get(key) ?? { waiting: [], seen: 0 }) : undefined;
    if (group) {
      groups.set(key, group);
      group.seen++;
      if (size === 0) {
        if (group.carrier !== undefined) {
          yield linkEntry(h, group.carrier);
        } else {
          if (++pending > maxPending)
            throw formatError(`more than ${maxPending} hardlinks wait for their data`);
          group.waiting.push(h);
        }
        if (group.carrier !== undefined && group.seen >= nlink) groups.delete(key);
        continue;
      }
      if (group.carrier !== undefined) {
        throw formatError(
          `entry ${shown}: inode ${ino} carries data twice (also in ${JSON.stringify(group.carrier)})`,
        );
      }
      group.carrier = name;
    }

    // A regular file with data: stream it, then finish whatever the consumer left unread.
    let remaining = size;
    let sum = 0;
    const consume = (chunk: Uint8Array) => {
      remaining -= chunk.length;
      if (magic === NEWC_CRC_MAGIC) for (const byte of chunk) sum = (sum + byte) >>> 0;
    };
    const body = (async function* () {
      for await (const chunk of reader.take(remaining)) {
        consume(chunk);
        yield chunk;
      }
      if (remaining > 0)
        throw formatError(`truncated in the data of entry ${shown} (${remaining} bytes missing)`);
    })();
    yield { header: toTarHeader(h, "file", ""), newc: h, payload: body };
    for await (const chunk of reader.take(remaining)) consume(chunk);
    if (remaining > 0)
      throw formatError(`truncated in the data of entry ${shown} (${remaining} bytes missing)`);
    if (magic === NEWC_CRC_MAGIC && sum !== check) {
      throw formatError(
        `entry ${shown}: checksum ${sum.toString(16)} does not match header ${check.toString(16)}`,
      );
    }
    await skipPad();
    if (group) {
      for (const waiting of group.waiting) yield linkEntry(waiting, name);
      pending -= group.waiting.length;
      group.waiting = [];
      if (group.seen >= nlink) groups.delete(key);
    }
  }

  // Groups whose data never came: GNU cpio makes them one empty file with links.
  for (const group of groups.values()) {
    const [first, ...rest] = group.waiting;
    if (!first) continue;
    yield { header: toTarHeader(first, "file", ""), newc: first, payload: noBody };
    for (const h of rest) yield linkEntry(h, first.name);
  }
}

/**
 * A cpio archive as export entries, streaming: each file's content is the archive
 * body, so it must be consumed (as `writeDirectory` does) before the next entry is
 * asked for. Names are passed on uncleaned; the writer refuses unsafe ones.
 */
export async function* entriesFromCpio(
  source: AsyncIterable<Uint8Array>,
  opts: CpioReadOptions = {},
): AsyncGenerator<ExportEntry> {
  for await (const { header, payload } of readCpio(source, opts)) {
    if (header.nameRaw || header.linknameRaw) {
      throw new RootstockError(
        "INVALID_FORMAT",
        `cpio entry ${JSON.stringify(header.name)}: name or link target is not valid UTF-8`,
      );
    }
    const entry: ExportEntry = {
      path: header.name,
      type: header.type,
      mode: header.mode,
      uid: header.uid,
      gid: header.gid,
      mtime: header.mtime,
      size: header.size,
      devmajor: header.devmajor,
      devminor: header.devminor,
    };
    if (header.type === "symlink" || header.type === "hardlink") entry.linkTarget = header.linkname;
    if (header.type === "file" && header.size > 0) entry.content = { kind: "stream", open: () => payload };
    yield entry;
  }
}
