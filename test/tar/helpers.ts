/**
 * Shared pieces of the tar tests: the independent oracles (Python tarfile, GNU tar's
 * verbose listing) and our reader's view of an archive in the same shape.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readTar, readTarFile, reemitTar, type TarHeader, writeTar } from "../../src/tar/index.js";

const execFileP = promisify(execFile);
export const PYTAR = fileURLToPath(new URL("./pytar.py", import.meta.url));
export const IS_ROOT = process.getuid?.() === 0;

export async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const { stdout } = await execFileP(cmd, args, {
    cwd,
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, TZ: "UTC", LC_ALL: "C.UTF-8" },
  });
  return stdout;
}

export interface Member {
  name: string; // hex of the bytes
  linkname: string;
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number; // seconds, possibly fractional
  devmajor: number;
  devminor: number;
  xattrs: Record<string, string>; // name -> hex value
}

export async function pythonList(archive: string): Promise<Member[]> {
  const out = await run("python3", [PYTAR, "list", archive]);
  return out
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Member);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const utf8 = new TextEncoder();

/** Our header in the oracle's shape (Python strips a directory's trailing slashes). */
export function memberOf(h: TarHeader): Member {
  let name = hex(h.nameRaw ?? utf8.encode(h.name));
  if (h.type === "dir") while (name.length > 2 && name.endsWith("2f")) name = name.slice(0, -2);
  return {
    name,
    linkname: hex(h.linknameRaw ?? utf8.encode(h.linkname)),
    type: h.type,
    size: h.declaredSize ?? h.size,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    mtime: h.mtime.sec + h.mtime.nsec / 1e9,
    devmajor: h.devmajor,
    devminor: h.devminor,
    xattrs: Object.fromEntries(h.xattrs.map(([k, v]) => [k, hex(v)])),
  };
}

export async function ourHeaders(archive: string): Promise<TarHeader[]> {
  const headers: TarHeader[] = [];
  for await (const entry of readTarFile(archive)) headers.push(entry.header);
  return headers;
}

/**
 * Re-emits an archive through reader → writer and returns the sha256 and length of
 * the output, plus what the reader saw (to prove the archive exercises something).
 */
export async function reemitFile(
  archive: string,
  chunkSize?: number,
  recycleBuffers = false,
): Promise<{
  sha256: string;
  length: number;
  extensionEntries: number;
  trailerRest: number;
  entries: number;
}> {
  const reader = readTarFile(archive, { ...(chunkSize ? { chunkSize } : {}), recycleBuffers });
  let extensionEntries = 0;
  let entries = 0;
  async function* watched() {
    for await (const entry of reader) {
      entries++;
      if (entry.headerBytes.length - entry.padding > 512) extensionEntries++;
      yield entry;
    }
  }
  const hash = createHash("sha256");
  let length = 0;
  let trailerRest = 0;
  async function* items() {
    yield* watched();
    const trailer = reader.trailer;
    async function* rest() {
      for await (const c of trailer.rest) {
        trailerRest += c.length;
        yield c;
      }
    }
    yield { endBlocks: trailer.endBlocks, rest: rest() };
  }
  for await (const chunk of writeTar(items())) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { sha256: hash.digest("hex"), length, extensionEntries, trailerRest, entries };
}

export async function sha256File(path: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(path))
    .digest("hex");
}

/** Re-emits in-memory bytes fed in the given chunk size; returns the output. */
export async function reemitBytes(bytes: Uint8Array, chunkSize: number): Promise<Buffer> {
  async function* chunks() {
    for (let i = 0; i < bytes.length; i += chunkSize) yield bytes.subarray(i, i + chunkSize);
  }
  const out: Uint8Array[] = [];
  for await (const c of writeTar(reemitTar(readTar(chunks())))) out.push(c);
  return Buffer.concat(out);
}

/** One line of `tar -tv --numeric-owner --full-time` (TZ=UTC), parsed. */
export interface GnuListing {
  typeChar: string;
  perms: string;
  uid: number;
  gid: number;
  sizeOrDevice: string;
  mtime: number;
  name: string;
  target?: string;
}

export async function gnuList(archive: string): Promise<GnuListing[]> {
  const out = await run("tar", [
    "-tv",
    "--numeric-owner",
    "--full-time",
    "--quoting-style=literal",
    "-f",
    archive,
  ]);
  return out
    .split("\n")
    .filter((l) => l.length > 0)
    .map((line) => {
      const m =
        /^(\S)(\S{9}) (\d+)\/(\d+)\s+(\d+|\d+,\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s+(.*)$/.exec(
          line,
        );
      if (!m) throw new Error(`unparsed tar -tv line: ${line}`);
      const [, typeChar, perms, uid, gid, sizeOrDevice, date, rest] = m as unknown as string[];
      const [whole, frac = ""] = date!.split(".");
      const mtime = Date.parse(`${whole!.replace(" ", "T")}Z`) / 1000 + (frac ? Number(`0.${frac}`) : 0);
      let name = rest!;
      let target: string | undefined;
      const sep = typeChar === "l" ? " -> " : typeChar === "h" ? " link to " : undefined;
      if (sep)
        [name, target] = [rest!.slice(0, rest!.indexOf(sep)), rest!.slice(rest!.indexOf(sep) + sep.length)];
      return {
        typeChar: typeChar!,
        perms: perms!,
        uid: Number(uid),
        gid: Number(gid),
        sizeOrDevice: sizeOrDevice!,
        mtime,
        name,
        target,
      };
    });
}

/** `ls -l` style permission string of a mode (setuid/setgid/sticky included). */
export function permString(mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string) =>
    `${bits & 4 ? "r" : "-"}${bits & 2 ? "w" : "-"}${special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? "x" : "-"}`;
  return (
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, "s") +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, "s") +
    rwx(mode & 7, (mode & 0o1000) !== 0, "t")
  );
}

const GNU_TYPE_CHAR: Record<string, string> = {
  file: "-",
  hardlink: "h",
  symlink: "l",
  char: "c",
  block: "b",
  dir: "d",
  fifo: "p",
};

/** Our header rendered the way GNU tar's listing shows it. */
export function gnuViewOf(h: TarHeader): GnuListing {
  return {
    typeChar: GNU_TYPE_CHAR[h.type]!,
    perms: permString(h.mode),
    uid: h.uid,
    gid: h.gid,
    sizeOrDevice: h.type === "char" || h.type === "block" ? `${h.devmajor},${h.devminor}` : String(h.size),
    // GNU tar 1.34 shows a negative fractional time as its whole part followed by the
    // fraction's magnitude (-1.25 s shows as -1 + 0.25); extraction is right.
    mtime:
      h.mtime.sec < 0 && h.mtime.nsec > 0
        ? h.mtime.sec + 1 + (1e9 - h.mtime.nsec) / 1e9
        : h.mtime.sec + h.mtime.nsec / 1e9,
    name: h.name,
    target: h.type === "symlink" || h.type === "hardlink" ? h.linkname : undefined,
  };
}
