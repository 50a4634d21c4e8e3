/** Shared helpers of the compress tests: small real archives made by real tools. */
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { RangeReader } from "../../src/compress/chunked-reader.js";
import { type EncodedLayer, type EncodeOptions, encodeLayer } from "../../src/compress/layer.js";

export const run = promisify(execFile);

const PY_TREE = String.raw`
import os, sys, tarfile, io
root = sys.argv[1]
os.makedirs(root + "/tree/dir/sub", exist_ok=True)
def w(p, data):
    with open(root + "/tree/" + p, "wb") as f: f.write(data)
w("dir/small.txt", b"hello world\n")
w("dir/zeros-first.bin", b"\0" * 5000 + b"tail" * 100)
w("dir/holes.bin", os.urandom(70000) + b"\0" * 200000 + os.urandom(3000) + b"\0" * 700 + b"x")
w("dir/big.bin", (b"".join(bytes([i % 251, (i * 7) % 253]) for i in range(300000))))
w("dir/empty", b"")
long = "dir/sub/" + "L" * 120 + "/" + "n" * 110 + ".txt"
os.makedirs(os.path.dirname(root + "/tree/" + long), exist_ok=True)
w(long, b"long name\n")
os.link(root + "/tree/dir/small.txt", root + "/tree/dir/hardlink.txt")
os.symlink("small.txt", root + "/tree/dir/symlink")
os.symlink("x" * 150, root + "/tree/dir/longlink")
os.mkfifo(root + "/tree/dir/fifo")
os.setxattr(root + "/tree/dir/small.txt", "user.comment", b"\x00\xffbinary")
os.setxattr(root + "/tree/dir/big.bin", "user.a", b"A")
for p, _, files in os.walk(root + "/tree"):
    os.utime(p, (1700000000, 1700000000))
    for f in files:
        os.utime(os.path.join(p, f), (1700000000.5, 1700000001.25), follow_symlinks=False)
def add(fmt, name):
    with tarfile.open(root + "/" + name, "w", format=fmt) as t:
        for p in sorted(os.listdir(root + "/tree")):
            t.add(root + "/tree/" + p, arcname=p)
        if fmt == tarfile.PAX_FORMAT:
            ti = tarfile.TarInfo("pax-xattr.txt")
            data = b"with xattrs\n"
            ti.size = len(data)
            ti.mtime = 1700000000.123456789
            ti.pax_headers = {"SCHILY.xattr.user.x": "v1", "SCHILY.xattr.security.capability": "c"}
            t.addfile(ti, io.BytesIO(data))
add(tarfile.PAX_FORMAT, "py-pax.tar")
add(tarfile.GNU_FORMAT, "py-gnu.tar")
`;

/** Archives of one tree (long names, hardlinks, symlinks, fifo, xattrs, holes, zero-led files, record padding). */
export async function makeArchives(dir: string): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "mk.py"), PY_TREE);
  await run("python3", [join(dir, "mk.py"), dir]);
  const out: Record<string, string> = {
    "python-pax": join(dir, "py-pax.tar"),
    "python-gnu": join(dir, "py-gnu.tar"),
  };
  for (const fmt of ["gnu", "posix", "ustar"]) {
    const path = join(dir, `gnutar-${fmt}.tar`);
    // ustar cannot hold the long names: it gets the tree without them.
    const excl = fmt === "ustar" ? ["--exclude=LLLL*", "--exclude=longlink"] : [];
    await run("tar", [
      "-C",
      join(dir, "tree"),
      `--format=${fmt}`,
      "--xattrs",
      "--xattrs-include=*",
      ...excl,
      "-cf",
      path,
      ".",
    ]);
    out[`gnutar-${fmt}`] = path;
  }
  const bsd = join(dir, "bsdtar.tar");
  await run("bsdtar", ["-C", join(dir, "tree"), "-cf", bsd, "."]);
  out.bsdtar = bsd;
  return out;
}

export async function* fileChunks(path: string): AsyncGenerator<Uint8Array> {
  yield await readFile(path);
}

/** Encodes a tar file to an in-memory blob. */
export async function encodeToBuffer(
  tarPath: string,
  opts: EncodeOptions,
): Promise<{ blob: Buffer; layer: EncodedLayer }> {
  const { blob, result } = encodeLayer(fileChunks(tarPath), opts);
  const parts: Uint8Array[] = [];
  for await (const c of blob) parts.push(c);
  return { blob: Buffer.concat(parts), layer: await result };
}

export function bufferReader(blob: Uint8Array): RangeReader {
  return async (start, end) => {
    if (start < 0 || end > blob.length || end < start)
      throw new Error(`range ${start}-${end} outside ${blob.length}`);
    return blob.subarray(start, end);
  };
}
