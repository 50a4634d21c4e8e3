/**
 * Test helpers: a listing of a directory tree that two extractions must agree on
 * (type, mode, owner, mtime, size, link target, device, content hash, hardlink
 * group), and a sample entry list exercising every type the formats carry.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, readlink } from "node:fs/promises";
import { promisify } from "node:util";
import type { ExportEntry } from "../../src/export/entry.js";

const run = promisify(execFile);

export interface Listed {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  nlink: number;
  link: string;
  rdev: string;
  sha256: string;
  /** First path (in sorted order) of this inode: equal for all hardlinks of one file. */
  inode: string;
}

/** Every entry under `dir` (not `dir` itself unless `withRoot`), sorted by path. */
export async function listTree(dir: string, withRoot = true): Promise<Listed[]> {
  // %y type, %m mode, %U/%G owner, %T@ mtime, %s size, %n links, %l target, %i inode, %D device, and rdev via stat later.
  const { stdout } = await run(
    "find",
    [dir, "-printf", "%P\\0%y\\0%m\\0%U\\0%G\\0%T@\\0%s\\0%n\\0%l\\0%i\\0"],
    {
      maxBuffer: 512 * 1024 * 1024,
    },
  );
  const fields = stdout.split("\0");
  const rows: Listed[] = [];
  const firstOfInode = new Map<string, string>();
  const raw: Array<{ row: Listed; ino: string }> = [];
  for (let i = 0; i + 10 <= fields.length; i += 10) {
    const [path, type, mode, uid, gid, mtime, size, nlink, link, ino] = fields.slice(i, i + 10) as string[];
    const rel = path === "" ? "." : path!;
    if (rel === "." && !withRoot) continue;
    const abs = rel === "." ? dir : `${dir}/${rel}`;
    let sha256 = "";
    if (type === "f")
      sha256 = createHash("sha256")
        .update(await readFile(abs))
        .digest("hex");
    let rdev = "";
    if (type === "c" || type === "b") {
      const { stdout: st } = await run("stat", ["-c", "%t:%T", abs]);
      rdev = st.trim();
    }
    if (type === "l") await readlink(abs);
    const row: Listed = {
      path: rel,
      type: type!,
      mode: mode!,
      uid: Number(uid),
      gid: Number(gid),
      mtime: Math.floor(Number(mtime)),
      size: type === "f" || type === "l" ? Number(size) : 0,
      nlink: Number(nlink),
      link: link!,
      rdev,
      sha256,
      inode: "",
    };
    raw.push({ row, ino: ino! });
  }
  raw.sort((a, b) => Buffer.compare(Buffer.from(a.row.path), Buffer.from(b.row.path)));
  for (const { row, ino } of raw) {
    if (row.type === "f") {
      if (!firstOfInode.has(ino)) firstOfInode.set(ino, row.path);
      row.inode = firstOfInode.get(ino)!;
    }
    rows.push(row);
  }
  return rows;
}

const t = (sec: number) => ({ sec, nsec: 0 });
const text = (s: string) => ({ kind: "bytes" as const, data: Buffer.from(s) });

/** A small tree with every type, hardlinks whose link sorts before its file, odd sizes and modes. */
export function sampleEntries(contentPath: string, contentSize: number): ExportEntry[] {
  const base = { uid: 0, gid: 0, size: 0 };
  return [
    { ...base, path: ".", type: "dir", mode: 0o755, mtime: t(1_700_000_000) },
    { ...base, path: "bin", type: "dir", mode: 0o755, mtime: t(1_700_000_100) },
    {
      ...base,
      path: "bin/tool",
      type: "file",
      mode: 0o4755,
      mtime: t(1_700_000_200),
      size: 5,
      content: text("tool\n"),
    },
    {
      ...base,
      path: "bin/a-tool",
      type: "hardlink",
      mode: 0o4755,
      mtime: t(1_700_000_200),
      linkTarget: "bin/tool",
    },
    {
      ...base,
      path: "bin/zz-tool",
      type: "hardlink",
      mode: 0o4755,
      mtime: t(1_700_000_200),
      linkTarget: "bin/tool",
    },
    { ...base, path: "bin/sh", type: "symlink", mode: 0o777, mtime: t(1_700_000_300), linkTarget: "tool" },
    { ...base, path: "dev", type: "dir", mode: 0o755, mtime: t(1_700_000_400) },
    {
      ...base,
      path: "dev/null",
      type: "char",
      mode: 0o666,
      mtime: t(1_700_000_500),
      devmajor: 1,
      devminor: 3,
    },
    {
      ...base,
      path: "dev/sda",
      type: "block",
      mode: 0o660,
      mtime: t(1_700_000_500),
      devmajor: 8,
      devminor: 0,
      gid: 6,
    },
    { ...base, path: "dev/pipe", type: "fifo", mode: 0o600, mtime: t(1_700_000_600) },
    { ...base, path: "etc", type: "dir", mode: 0o750, mtime: t(1_600_000_000), uid: 1000, gid: 1000 },
    { ...base, path: "etc/empty", type: "file", mode: 0o600, mtime: t(1_600_000_001) },
    {
      ...base,
      path: "etc/odd",
      type: "file",
      mode: 0o640,
      mtime: t(1_600_000_002),
      uid: 1000,
      gid: 100,
      size: 7,
      content: text("1234567"),
    },
    {
      ...base,
      path: "etc/big",
      type: "file",
      mode: 0o644,
      mtime: t(1_600_000_003),
      size: contentSize,
      content: { kind: "path", path: contentPath },
    },
    {
      ...base,
      path: "etc/ünïcödé name",
      type: "file",
      mode: 0o644,
      mtime: t(0),
      size: 3,
      content: text("ü\n"),
    },
    { ...base, path: "tmp", type: "dir", mode: 0o1777, mtime: t(1_700_000_700) },
    { ...base, path: "tmp/deep", type: "dir", mode: 0o555, mtime: t(1_700_000_800) },
    {
      ...base,
      path: "tmp/deep/file",
      type: "file",
      mode: 0o444,
      mtime: t(1_700_000_900),
      size: 1,
      content: text("x"),
    },
  ];
}

/** What `listTree` should show for entries (all but nlink, which the filesystem decides for directories). */
export function expectedListing(
  entries: ExportEntry[],
  contents: Map<string, string>,
): Omit<Listed, "nlink">[] {
  const typeLetter: Record<string, string> = {
    file: "f",
    hardlink: "f",
    dir: "d",
    symlink: "l",
    char: "c",
    block: "b",
    fifo: "p",
  };
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const rows = entries.map((e) => {
    const src = e.type === "hardlink" ? byPath.get(e.linkTarget!)! : e;
    const isFile = src.type === "file";
    return {
      path: e.path,
      type: typeLetter[e.type]!,
      mode: e.type === "symlink" ? "777" : (src.mode & 0o7777).toString(8),
      uid: src.uid,
      gid: src.gid,
      mtime: src.mtime.sec,
      size: isFile ? src.size : e.type === "symlink" ? Buffer.byteLength(e.linkTarget!) : 0,
      link: e.type === "symlink" ? e.linkTarget! : "",
      rdev:
        e.type === "char" || e.type === "block"
          ? `${e.devmajor!.toString(16)}:${e.devminor!.toString(16)}`
          : "",
      sha256: isFile ? contents.get(src.path)! : "",
      inode: "",
    };
  });
  rows.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  const first = new Map<string, string>();
  for (const row of rows) {
    const e = byPath.get(row.path)!;
    if (row.type !== "f") continue;
    const key = e.type === "hardlink" ? e.linkTarget! : e.path;
    if (!first.has(key)) first.set(key, row.path);
    row.inode = first.get(key)!;
  }
  return rows;
}

export function withoutNlink(rows: Listed[]): Omit<Listed, "nlink">[] {
  return rows.map(({ nlink: _, ...rest }) => rest);
}

const tt = (sec: number, nsec = 0) => ({ sec, nsec });

/** Owner-, mode-, time- and xattr-heavy entries whose application order matters. */
export function metadataEntries(): ExportEntry[] {
  const base = { uid: 0, gid: 0, size: 0 };
  const bytes = (s: string) => ({ kind: "bytes" as const, data: Buffer.from(s) });
  return [
    { ...base, path: ".", type: "dir", mode: 0o755, mtime: tt(1_000) },
    { ...base, path: "ro", type: "dir", mode: 0o555, mtime: tt(2_000), uid: 1000, gid: 1000 },
    { ...base, path: "ro/sub", type: "dir", mode: 0o500, mtime: tt(3_000, 500_000_000) },
    {
      ...base,
      path: "ro/sub/suid",
      type: "file",
      mode: 0o4755,
      mtime: tt(4_000),
      uid: 1000,
      gid: 50,
      size: 2,
      content: bytes("#!"),
    },
    {
      ...base,
      path: "ro/ping",
      type: "file",
      mode: 0o755,
      mtime: tt(5_000),
      size: 1,
      content: bytes("p"),
      // cap_net_raw+ep: chown would clear it, so it must be set after the owner.
      xattrs: [
        ["security.capability", Buffer.from("0100000200200000000000000000000000000000", "hex")],
        ["user.binary", Buffer.from([0, 1, 0xff, 0x3d, 0x0a])],
        ["user.empty", Buffer.alloc(0)],
      ],
    },
    {
      ...base,
      path: "ro/link",
      type: "symlink",
      mode: 0o777,
      mtime: tt(6_000),
      linkTarget: "sub/suid",
      uid: 7,
      gid: 7,
    },
    { ...base, path: "ro/fifo", type: "fifo", mode: 0o640, mtime: tt(7_000), uid: 1000, gid: 1000 },
    {
      ...base,
      path: "ro/tty",
      type: "char",
      mode: 0o620,
      mtime: tt(8_000),
      gid: 5,
      devmajor: 4,
      devminor: 1,
    },
    {
      ...base,
      path: "ro/weird name\nwith=eq",
      type: "file",
      mode: 0o600,
      mtime: tt(9_000),
      xattrs: [["user.k=v", Buffer.from("x")]],
    },
  ];
}
