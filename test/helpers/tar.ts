/** Tar headers for tests that build archives in memory, and a tiny real tarball. */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
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

/** `DIR/small.tar`: a one-file tree (etc/motd) made by GNU tar; returns its path. */
export async function smallTarball(dir: string, motd = "hello\n"): Promise<string> {
  await mkdir(join(dir, "tree", "etc"), { recursive: true });
  await writeFile(join(dir, "tree", "etc", "motd"), motd);
  const path = join(dir, "small.tar");
  await promisify(execFile)("tar", ["-cf", path, "-C", join(dir, "tree"), "."]);
  return path;
}
