/**
 * The zstd:chunked table of contents (zstd-chunked.md §4): the model, the
 * Go-compatible serializer (field order, omission rules, RFC 3339 nano times,
 * base64 xattrs) and a strict parser for untrusted TOCs. Pure data → data.
 */
import { RootstockError } from "../errors.js";
import { type Digest, EMPTY_SHA256, isDigest } from "../oci/digest.js";
import type { TarHeader, TarTime } from "../tar/types.js";
import { goString, goTime, type JsonValue, parseGoTime, parseStrictJson } from "./gojson.js";
import { goCleanPath } from "./tarsplit.js";

export type TocEntryType = "reg" | "hardlink" | "symlink" | "char" | "block" | "dir" | "fifo" | "chunk";

export interface TocEntry {
  type: TocEntryType;
  name: string;
  linkName?: string;
  mode?: number;
  size?: number;
  uid?: number;
  gid?: number;
  modtime?: TarTime;
  accesstime?: TarTime;
  changetime?: TarTime;
  devMajor?: number;
  devMinor?: number;
  /** name → base64 value, as stored. */
  xattrs?: Record<string, string>;
  digest?: Digest;
  offset?: number;
  endOffset?: number;
  chunkSize?: number;
  chunkOffset?: number;
  chunkDigest?: Digest;
  chunkType?: "zeros";
}

export interface Toc {
  version: number;
  entries: TocEntry[];
  tarSplitDigest?: Digest;
}

const TYPE_OF: Record<TarHeader["type"], TocEntryType> = {
  file: "reg",
  hardlink: "hardlink",
  symlink: "symlink",
  char: "char",
  block: "block",
  dir: "dir",
  fifo: "fifo",
};

/** The TOC entry mirroring a tar header (payload fields are filled by the writer). */
export function tocEntryFromHeader(h: TarHeader): TocEntry {
  if (h.typeflag === 0x37 /* '7' */ || !(h.type in TYPE_OF)) {
    throw new RootstockError(
      "TAR_UNSUPPORTED",
      `${JSON.stringify(h.name)}: tar type ${JSON.stringify(String.fromCharCode(h.typeflag))} cannot be stored in zstd:chunked`,
    );
  }
  const e: TocEntry = { type: TYPE_OF[h.type], name: h.name };
  if (h.linkname) e.linkName = h.linkname;
  if (h.mode) e.mode = h.mode;
  const size = h.declaredSize ?? h.size;
  if (size) e.size = size;
  if (h.uid) e.uid = h.uid;
  if (h.gid) e.gid = h.gid;
  e.modtime = h.mtime;
  if (h.atime && (h.atime.sec !== 0 || h.atime.nsec !== 0)) e.accesstime = h.atime;
  if (h.ctime && (h.ctime.sec !== 0 || h.ctime.nsec !== 0)) e.changetime = h.ctime;
  if (h.devmajor) e.devMajor = h.devmajor;
  if (h.devminor) e.devMinor = h.devminor;
  if (h.xattrs.length > 0) {
    const map = new Map<string, string>();
    for (const [k, v] of h.xattrs)
      map.set(k, Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64"));
    const xattrs: Record<string, string> = {};
    for (const k of [...map.keys()].sort(compareUtf8)) xattrs[k] = map.get(k) as string;
    e.xattrs = xattrs;
  }
  return e;
}

/** Go sorts map keys by bytes: compare UTF-8, not UTF-16. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** One entry as jsoniter (stdlib mode) writes it. */
export function serializeTocEntry(e: TocEntry): string {
  let s = `{"type":${goString(e.type)},"name":${goString(e.name)}`;
  if (e.linkName) s += `,"linkName":${goString(e.linkName)}`;
  if (e.mode) s += `,"mode":${e.mode}`;
  if (e.size) s += `,"size":${e.size}`;
  if (e.uid) s += `,"uid":${e.uid}`;
  if (e.gid) s += `,"gid":${e.gid}`;
  if (e.modtime) s += `,"modtime":"${goTime(e.modtime)}"`;
  if (e.accesstime) s += `,"accesstime":"${goTime(e.accesstime)}"`;
  if (e.changetime) s += `,"changetime":"${goTime(e.changetime)}"`;
  if (e.devMajor) s += `,"devMajor":${e.devMajor}`;
  if (e.devMinor) s += `,"devMinor":${e.devMinor}`;
  if (e.xattrs && Object.keys(e.xattrs).length > 0) {
    s += `,"xattrs":{${Object.keys(e.xattrs)
      .sort(compareUtf8)
      .map((k) => `${goString(k)}:${goString((e.xattrs as Record<string, string>)[k] as string)}`)
      .join(",")}}`;
  }
  if (e.digest) s += `,"digest":${goString(e.digest)}`;
  if (e.offset) s += `,"offset":${e.offset}`;
  if (e.endOffset) s += `,"endOffset":${e.endOffset}`;
  if (e.chunkSize) s += `,"chunkSize":${e.chunkSize}`;
  if (e.chunkOffset) s += `,"chunkOffset":${e.chunkOffset}`;
  if (e.chunkDigest) s += `,"chunkDigest":${goString(e.chunkDigest)}`;
  if (e.chunkType) s += `,"chunkType":${goString(e.chunkType)}`;
  return `${s}}`;
}

export function serializeToc(toc: Toc): string {
  const parts = [`{"version":${toc.version},"entries":[`];
  toc.entries.forEach((e, i) => {
    parts.push(i === 0 ? serializeTocEntry(e) : `,${serializeTocEntry(e)}`);
  });
  parts.push("]");
  if (toc.tarSplitDigest) parts.push(`,"tarSplitDigest":${goString(toc.tarSplitDigest)}`);
  parts.push("}");
  return parts.join("");
}

const ENTRY_TYPES = new Set<string>(["reg", "hardlink", "symlink", "char", "block", "dir", "fifo", "chunk"]);
const GO_ZERO_TIME_SEC = -62135596800;

function fail(what: string, msg: string): never {
  throw new RootstockError("CHUNKED_FORMAT", `TOC ${what}: ${msg}`);
}

/** Looks keys up case-insensitively (as Go's decoder); two spellings of one key are refused. */
function fields(obj: Map<string, JsonValue>, what: string): Map<string, JsonValue> {
  const out = new Map<string, JsonValue>();
  for (const [k, v] of obj) {
    const lower = k.toLowerCase();
    if (out.has(lower)) fail(what, `duplicate field ${JSON.stringify(k)}`);
    out.set(lower, v);
  }
  return out;
}

/** A field of one JSON object by its canonical name (the strict path folds case, the fast path needs none). */
type FieldGetter = (key: string) => unknown;

function intField(get: FieldGetter, key: string, what: string): number | undefined {
  const v = get(key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v)) fail(what, `${key} is not an integer`);
  if (v < 0 && key !== "mode") fail(what, `${key} is negative`);
  return v === 0 ? undefined : v;
}

function strField(get: FieldGetter, key: string, what: string): string | undefined {
  const v = get(key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") fail(what, `${key} is not a string`);
  return v === "" ? undefined : v;
}

function digestField(get: FieldGetter, key: string, what: string): Digest | undefined {
  const v = strField(get, key, what);
  if (v === undefined) return undefined;
  if (!isDigest(v)) fail(what, `${key} is not a sha256 digest: ${JSON.stringify(v)}`);
  return v;
}

/** Parsed times by their text: a root filesystem has few distinct mtimes. */
type TimeCache = Map<string, TarTime>;

function timeField(get: FieldGetter, key: string, what: string, cache: TimeCache): TarTime | undefined {
  const v = strField(get, key, what);
  if (v === undefined) return undefined;
  let t = cache.get(v);
  if (!t) {
    t = parseGoTime(v, `TOC ${what} ${key}`);
    cache.set(v, t);
  }
  return t.sec === GO_ZERO_TIME_SEC && t.nsec === 0 ? undefined : { sec: t.sec, nsec: t.nsec };
}

const INT_KEYS = [
  "mode",
  "size",
  "uid",
  "gid",
  "devMajor",
  "devMinor",
  "offset",
  "endOffset",
  "chunkSize",
  "chunkOffset",
] as const;
const TIME_KEYS = ["modtime", "accesstime", "changetime"] as const;

function parseEntry(get: FieldGetter, index: number, times: TimeCache): TocEntry {
  const name = get("name");
  if (typeof name !== "string") fail(`entry ${index}`, "name is missing");
  const what = `entry ${JSON.stringify(name)}`;
  const type = get("type");
  if (typeof type !== "string" || !ENTRY_TYPES.has(type)) fail(what, `unknown type ${JSON.stringify(type)}`);
  const e: TocEntry = { type: type as TocEntryType, name };
  const linkName = strField(get, "linkName", what);
  if (linkName !== undefined) e.linkName = linkName;
  for (const key of INT_KEYS) {
    const n = intField(get, key, what);
    if (n !== undefined) e[key] = n;
  }
  for (const key of TIME_KEYS) {
    const t = timeField(get, key, what, times);
    if (t !== undefined) e[key] = t;
  }
  const xattrs = get("xattrs");
  if (xattrs !== undefined && xattrs !== null) {
    const pairs =
      xattrs instanceof Map
        ? [...xattrs]
        : typeof xattrs === "object" && !Array.isArray(xattrs)
          ? Object.entries(xattrs)
          : fail(what, "xattrs is not an object");
    const out: Record<string, string> = {};
    for (const [k, v] of pairs) {
      if (typeof v !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) {
        fail(what, `xattr ${JSON.stringify(k)} is not base64`);
      }
      out[k] = v;
    }
    if (Object.keys(out).length > 0) e.xattrs = out;
  }
  const digest = digestField(get, "digest", what);
  if (digest) e.digest = digest;
  const chunkDigest = digestField(get, "chunkDigest", what);
  if (chunkDigest) e.chunkDigest = chunkDigest;
  const chunkType = strField(get, "chunkType", what);
  if (chunkType !== undefined) {
    if (chunkType !== "zeros") fail(what, `unknown chunkType ${JSON.stringify(chunkType)}`);
    e.chunkType = chunkType;
  }
  if (e.type === "reg" && !e.size && !e.digest) e.digest = EMPTY_SHA256;
  return e;
}

export interface ParseTocOptions {
  /** Payload offsets must lie below this (the TOC's own offset in the blob). */
  dataEnd?: number;
}

/**
 * Strict TOC parser: JSON with no trailing data and no duplicate keys, field
 * names matched case-insensitively, unknown fields skipped, duplicate names
 * refused, chunk entries only right after their file, offsets inside the blob.
 */
export function parseToc(json: string, opts: ParseTocOptions = {}): Toc {
  const toc = canonicalToc(json) ?? strictToc(json);
  validateToc(toc, opts);
  return toc;
}

function strictToc(json: string): Toc {
  const root = parseStrictJson(json, "TOC");
  if (!(root instanceof Map)) fail("document", "not an object");
  const f = fields(root, "document");
  const get: FieldGetter = (key) => f.get(key.toLowerCase());
  const version = get("version");
  const entries = get("entries");
  if (!Array.isArray(entries)) fail("document", "entries is missing");
  const times: TimeCache = new Map();
  const toc: Toc = {
    version: typeof version === "number" ? version : 0,
    entries: entries.map((value, index) => {
      if (!(value instanceof Map)) fail(`entry ${index}`, "not an object");
      const ef = fields(value, `entry ${index}`);
      return parseEntry((key) => ef.get(key.toLowerCase()), index, times);
    }),
  };
  const tsd = digestField(get, "tarSplitDigest", "document");
  if (tsd) toc.tarSplitDigest = tsd;
  return toc;
}

const DOCUMENT_KEYS = new Set(["version", "entries", "tarSplitDigest"]);
const ENTRY_KEYS = new Set<string>([
  "type",
  "name",
  "linkName",
  "xattrs",
  "digest",
  "chunkDigest",
  "chunkType",
  ...INT_KEYS,
  ...TIME_KEYS,
]);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The fast path for a TOC written the way writers write it (no whitespace, the
 * canonical field names): native JSON.parse, and `JSON.stringify(parsed) === json`
 * proves the text had no duplicate key, no rounded number and nothing after the
 * value, the cases where JSON.parse reads differently from the strict parser. Any
 * other field name goes to the strict parser; so does every error, for its message.
 */
function canonicalToc(json: string): Toc | undefined {
  let root: unknown;
  try {
    root = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isPlainObject(root) || JSON.stringify(root) !== json) return undefined;
  for (const key in root) if (!DOCUMENT_KEYS.has(key)) return undefined;
  const entries = root.entries;
  if (!Array.isArray(entries)) return undefined;
  for (const entry of entries) {
    if (!isPlainObject(entry)) return undefined;
    for (const key in entry) if (!ENTRY_KEYS.has(key)) return undefined;
  }
  try {
    const times: TimeCache = new Map();
    const toc: Toc = {
      version: typeof root.version === "number" ? root.version : 0,
      entries: entries.map((entry: Record<string, unknown>, index) =>
        parseEntry((key) => entry[key], index, times),
      ),
    };
    const tsd = digestField((key) => root[key], "tarSplitDigest", "document");
    if (tsd) toc.tarSplitDigest = tsd;
    return toc;
  } catch {
    return undefined;
  }
}

/** The structural checks of parseToc, also usable on a TOC built in memory. */
export function validateToc(toc: Toc, opts: ParseTocOptions = {}): void {
  const names = new Set<string>();
  const cleanNames = new Set<string>();
  let file: TocEntry | undefined;
  let nextChunkOffset = 0;
  let lastOffset = 0;
  const closeFile = () => {
    if (file && file.chunkSize !== undefined && nextChunkOffset !== (file.size ?? 0)) {
      fail(
        `entry ${JSON.stringify(file.name)}`,
        `chunks cover ${nextChunkOffset} bytes of ${file.size ?? 0}`,
      );
    }
    file = undefined;
  };
  for (const e of toc.entries) {
    const what = `entry ${JSON.stringify(e.name)}`;
    if (e.offset !== undefined) {
      if (opts.dataEnd !== undefined && e.offset >= opts.dataEnd)
        fail(what, `offset ${e.offset} is past the data (${opts.dataEnd})`);
      if (e.offset < lastOffset) fail(what, `offset ${e.offset} goes backwards`);
      lastOffset = e.offset;
    }
    if (e.type === "chunk") {
      if (!file || file.name !== e.name) fail(what, "chunk type without a regular file");
      if ((e.chunkOffset ?? 0) !== nextChunkOffset)
        fail(what, `chunkOffset ${e.chunkOffset ?? 0}, expected ${nextChunkOffset}`);
      if (!e.chunkSize || !e.offset) fail(what, "chunk without size or offset");
      nextChunkOffset += e.chunkSize;
      continue;
    }
    closeFile();
    if (names.has(e.name)) fail(what, "TOC contains duplicate entries");
    const clean = goCleanPath(e.name);
    if (cleanNames.has(clean)) fail(what, "TOC contains duplicate entries (after cleaning the path)");
    names.add(e.name);
    cleanNames.add(clean);
    if (e.type === "reg") {
      const size = e.size ?? 0;
      if (size > 0) {
        if (!e.digest) fail(what, "regular file without digest");
        if (!e.offset || !e.endOffset) fail(what, "regular file without offset/endOffset");
        if (e.endOffset <= e.offset) fail(what, "endOffset is not after offset");
        if (opts.dataEnd !== undefined && e.endOffset > opts.dataEnd)
          fail(what, `endOffset ${e.endOffset} is past the data (${opts.dataEnd})`);
        file = e;
        nextChunkOffset = e.chunkSize ?? size;
        if (e.chunkSize !== undefined && (e.chunkOffset ?? 0) !== 0)
          fail(what, "first chunk does not start at 0");
      }
    }
  }
  closeFile();
}

/** One piece of a file to fetch (or to fill with zeros) and decode. */
export interface FrameRange {
  /** [start, end) in the blob. */
  start: number;
  end: number;
  /** Uncompressed bytes this range yields for the file. */
  size: number;
  /** Offset of those bytes inside the file. */
  fileOffset: number;
  zeros: boolean;
  chunkDigest?: Digest;
}

export interface FileRanges {
  /** Index of the reg entry in toc.entries. */
  index: number;
  entry: TocEntry;
  ranges: FrameRange[];
}

/**
 * mergeTocEntries (§9.2): each non-empty regular file with its chunks, as blob ranges.
 * Chunk k spans [offset_k, offset_k+1), the last ends at endOffset (or at the next
 * entry's offset, or `tocOffset`, when endOffset is missing).
 */
export function fileRanges(toc: Toc, tocOffset: number): FileRanges[] {
  const out: FileRanges[] = [];
  const entries = toc.entries;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as TocEntry;
    if (e.type !== "reg" || !e.size) continue;
    const group: TocEntry[] = [e];
    let j = i + 1;
    while (j < entries.length && (entries[j] as TocEntry).type === "chunk")
      group.push(entries[j++] as TocEntry);
    let end = e.endOffset;
    if (!end) {
      end = tocOffset;
      for (let k = j; k < entries.length; k++) {
        const o = (entries[k] as TocEntry).offset;
        if (o) {
          end = o;
          break;
        }
      }
    }
    const ranges: FrameRange[] = [];
    let fileOffset = 0;
    group.forEach((c, k) => {
      const start = c.offset ?? 0;
      const next = k + 1 < group.length ? ((group[k + 1] as TocEntry).offset ?? 0) : (end as number);
      const size = c.chunkSize ? c.chunkSize : (e.size as number) - fileOffset;
      const r: FrameRange = { start, end: next, size, fileOffset, zeros: c.chunkType === "zeros" };
      if (c.chunkDigest) r.chunkDigest = c.chunkDigest;
      ranges.push(r);
      fileOffset += size;
    });
    out.push({ index: i, entry: e, ranges });
    i = j - 1;
  }
  return out;
}

function sameTime(a: TarTime | undefined, b: TarTime | undefined): boolean {
  return (a?.sec ?? 0) === (b?.sec ?? 0) && (a?.nsec ?? 0) === (b?.nsec ?? 0);
}

/**
 * ensureTOCMatchesTarSplit for one pair: the TOC entry must mirror the header the
 * tar-split rebuilds. Returns the first differing field, or undefined.
 */
export function tocEntryMismatch(e: TocEntry, h: TarHeader): string | undefined {
  let expected: TocEntry;
  try {
    expected = tocEntryFromHeader(h);
  } catch {
    return "type";
  }
  if (e.type !== expected.type) return "type";
  if (e.name !== expected.name) return "name";
  if ((e.linkName ?? "") !== (expected.linkName ?? "")) return "linkName";
  if ((e.mode ?? 0) !== (expected.mode ?? 0)) return "mode";
  if ((e.size ?? 0) !== (expected.size ?? 0)) return "size";
  if ((e.uid ?? 0) !== (expected.uid ?? 0)) return "uid";
  if ((e.gid ?? 0) !== (expected.gid ?? 0)) return "gid";
  if (!sameTime(e.modtime, expected.modtime)) return "modtime";
  if (!sameTime(e.accesstime, expected.accesstime)) return "accesstime";
  if (!sameTime(e.changetime, expected.changetime)) return "changetime";
  if ((e.devMajor ?? 0) !== (expected.devMajor ?? 0)) return "devMajor";
  if ((e.devMinor ?? 0) !== (expected.devMinor ?? 0)) return "devMinor";
  const ax = e.xattrs ?? {};
  const bx = expected.xattrs ?? {};
  const ak = Object.keys(ax).sort();
  const bk = Object.keys(bx).sort();
  if (ak.length !== bk.length || ak.some((k, i) => k !== bk[i] || ax[k] !== bx[k])) return "xattrs";
  return undefined;
}
