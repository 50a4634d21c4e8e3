/**
 * The entry model every export format consumes: one merged root filesystem entry
 * (whiteouts already applied by the tree module), with its content given lazily as
 * a file to link or copy (a cas file object) or as bytes.
 */
import { createReadStream } from "node:fs";
import { RootstockError } from "../errors.js";
import type { TarEntryType, TarTime } from "../tar/types.js";

/** Where a regular file's bytes come from. Read only when the entry is written. */
export type ContentSource =
  /**
   * A file on disk (a cas file object): hardlinked, reflinked or copied. `prepared`:
   * the file already carries the entry's metadata, xattrs included, and its size,
   * mode, owner and mtime were just checked (a farm object, see farm.ts), so a
   * hardlink export links it without another look.
   */
  | { kind: "path"; path: string; prepared?: boolean }
  | { kind: "bytes"; data: Uint8Array }
  /** A stream that yields exactly `size` bytes; opened at most once. */
  | { kind: "stream"; open: () => AsyncIterable<Uint8Array> };

export interface ExportEntry {
  /** Relative path, "/"-separated ("usr/bin/ls"); "." is the root directory itself. */
  path: string;
  type: TarEntryType;
  /** Permission bits with setuid/setgid/sticky (0o7777); file type bits are ignored. */
  mode: number;
  uid: number;
  gid: number;
  mtime: TarTime;
  /** Regular files: content length. Other types: 0. */
  size: number;
  /** Symlinks: the target as stored. Hardlinks: the path of an earlier regular file entry. */
  linkTarget?: string;
  devmajor?: number;
  devminor?: number;
  /** Binary values; names like "security.capability", "user.x". */
  xattrs?: Array<[name: string, value: Uint8Array]>;
  /** Regular files only (a size-0 file may omit it). */
  content?: ContentSource;
}

/**
 * Checks a relative entry path and returns it cleaned: a leading "./" and a trailing
 * "/" are dropped, "." or "./" name the root. Anything that could point elsewhere is
 * refused with UNSAFE_PATH naming the entry: absolute names, ".." or "." components,
 * empty components, NUL, and the empty name.
 */
export function cleanEntryPath(raw: string, what = "entry"): string {
  const refuse = (why: string): never => {
    throw new RootstockError("UNSAFE_PATH", `${what} ${JSON.stringify(raw)}: ${why}`);
  };
  if (raw.includes("\0")) refuse("name contains NUL");
  if (raw === "") refuse("empty name");
  if (raw.startsWith("/")) refuse("absolute name");
  let path = raw;
  while (path.startsWith("./")) path = path.slice(2);
  if (path.endsWith("/")) path = path.slice(0, -1);
  if (path === "" || path === ".") return ".";
  for (const part of path.split("/")) {
    if (part === "..") refuse('".." component');
    if (part === ".") refuse('"." component');
    if (part === "") refuse("empty component");
  }
  return path;
}

/** An mtime as seconds for lutimes (Node passes them to utimensat at microsecond precision). */
export function mtimeSeconds(item: { mtime: TarTime }): number {
  return item.mtime.sec + item.mtime.nsec / 1e9;
}

/** Parent of a cleaned path ("." for top-level names). */
export function parentPath(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : path.slice(0, slash);
}

/** Depth of a cleaned path: "." is 0, "usr" is 1, "usr/bin" is 2. */
export function pathDepth(path: string): number {
  if (path === ".") return 0;
  let depth = 1;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) depth++;
  return depth;
}

/** Bytewise (UTF-8) order of paths: a parent always sorts before its children. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * A content file that is not there: the store lost a file object (exports of
 * recorded layers do not check every object up front; the reader finds out).
 * Other errors are returned as they are.
 */
export function missingContent(err: unknown, contentPath: string, entryPath?: string): unknown {
  if ((err as NodeJS.ErrnoException)?.code !== "ENOENT") return err;
  const whose = entryPath === undefined ? "" : `entry ${JSON.stringify(entryPath)}: its `;
  return new RootstockError(
    "STORE_CORRUPT",
    `${whose}content ${contentPath} is missing (run rootstock store fsck)`,
  );
}

/** The content of a regular file entry as a stream (empty when it has none). */
export async function* openContent(entry: ExportEntry): AsyncGenerator<Uint8Array> {
  const source = entry.content;
  if (!source) return;
  if (source.kind === "bytes") {
    yield source.data;
  } else if (source.kind === "path") {
    try {
      yield* createReadStream(source.path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Uint8Array>;
    } catch (err) {
      throw missingContent(err, source.path, entry.path);
    }
  } else {
    yield* source.open();
  }
}

/**
 * Passes an entry's content through and checks it yields exactly `entry.size` bytes
 * (SIZE_MISMATCH naming the entry otherwise): a declared size never allocates anything.
 */
export async function* sizedContent(entry: ExportEntry): AsyncGenerator<Uint8Array> {
  let seen = 0;
  for await (const chunk of openContent(entry)) {
    seen += chunk.length;
    if (seen > entry.size) {
      throw new RootstockError(
        "SIZE_MISMATCH",
        `entry ${JSON.stringify(entry.path)}: content is longer than its declared ${entry.size} bytes`,
      );
    }
    yield chunk;
  }
  if (seen !== entry.size) {
    throw new RootstockError(
      "SIZE_MISMATCH",
      `entry ${JSON.stringify(entry.path)}: content has ${seen} bytes, declared ${entry.size}`,
    );
  }
}
