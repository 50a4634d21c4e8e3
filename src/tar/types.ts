/**
 * The tar data model shared by every module that reads or writes layers
 * (compress, tree, export). The reader fills it from an archive exactly as Go's
 * archive/tar would (that is what zstd:chunked TOCs mirror); the writer turns it
 * back into bytes.
 */

export type TarEntryType = "file" | "hardlink" | "symlink" | "char" | "block" | "dir" | "fifo";

/** A timestamp with nanoseconds; `sec` may be negative (before 1970). */
export interface TarTime {
  sec: number;
  nsec: number;
}

export interface TarHeader {
  /** Resolved name: GNU `L`, else PAX `path`, else ustar prefix + "/" + name (Go's order). Not cleaned. */
  name: string;
  /** The name's bytes, only when they are not valid UTF-8 (`name` then holds U+FFFD replacements). */
  nameRaw?: Uint8Array;
  /** Resolved link target: GNU `K`, else PAX `linkpath`, else the header field. */
  linkname: string;
  /** The link target's bytes, only when they are not valid UTF-8. */
  linknameRaw?: Uint8Array;
  type: TarEntryType;
  /** The raw typeflag byte ('0', NUL and '7' all read as "file"; '7' is refused by zstd:chunked). */
  typeflag: number;
  /** The header's mode field as stored (permissions, setuid/setgid/sticky, sometimes S_IF bits). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Payload bytes that follow the header (0 for header-only types whatever the field says). */
  size: number;
  /**
   * The size the header declares (PAX `size` applied), only when it differs from `size`:
   * a header-only type whose size field is non-zero. TOC `size` and tar-split use it.
   */
  declaredSize?: number;
  mtime: TarTime;
  /** Only when the archive carries it (PAX atime, or a non-zero GNU atime field). */
  atime?: TarTime;
  ctime?: TarTime;
  devmajor: number;
  devminor: number;
  /** `SCHILY.xattr.NAME` records in archive order; values are binary. */
  xattrs: Array<[name: string, value: Uint8Array]>;
}
