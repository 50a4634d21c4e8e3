/** Tar headers for tests that build archives in memory. */
import type { TarHeader } from "../../src/tar/index.js";

/** A plain regular-file header: root-owned, mode 0644, a fixed mtime. */
export function regularFileHeader(name: string, size: number, extra: Partial<TarHeader> = {}): TarHeader {
  return {
    name,
    linkname: "",
    type: "file",
    typeflag: 0x30,
    mode: 0o644,
    uid: 0,
    gid: 0,
    uname: "",
    gname: "",
    size,
    mtime: { sec: 1_700_000_000, nsec: 0 },
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    ...extra,
  };
}
