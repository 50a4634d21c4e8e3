/**
 * Bad input: each case is a real archive (GNU tar, Python) damaged in one place, and
 * must fail with a one-line error of the right code that names the entry or offset.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type ErrorCode, isRootstockError } from "../../src/errors.js";
import { readTar } from "../../src/tar/index.js";
import { withTempDir } from "../helpers/tmp.js";
import { PYTAR, run } from "./helpers.js";

async function readAll(bytes: Uint8Array): Promise<void> {
  const reader = readTar(
    (async function* () {
      for (let i = 0; i < bytes.length; i += 1000) yield bytes.subarray(i, i + 1000);
    })(),
  );
  for await (const entry of reader) for await (const _ of entry.payload);
  for await (const _ of reader.trailer.rest);
}

async function expectError(bytes: Uint8Array, code: ErrorCode, pattern: RegExp): Promise<void> {
  await assert.rejects(readAll(bytes), (err) => {
    assert.ok(isRootstockError(err, code), `expected ${code}, got ${String(err)}`);
    if (process.env.SHOW_ERRORS) console.log(err.message);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes("\n"), "error message spans lines");
    return true;
  });
}

/** Offset of the header block whose name field starts with `name`. */
function headerOffset(bytes: Uint8Array, name: string): number {
  const needle = Buffer.from(name);
  for (let off = 0; off + 512 <= bytes.length; off += 512) {
    if (Buffer.from(bytes.subarray(off, off + needle.length)).equals(needle) && bytes[off + 257] === 0x75)
      return off;
  }
  throw new Error(`no header named ${name}`);
}

function fixChecksum(bytes: Uint8Array, off: number): void {
  bytes.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += bytes[off + i]!;
  Buffer.from(`${sum.toString(8).padStart(6, "0")}\0 `).copy(bytes, off + 148);
}

async function gnuArchive(dir: string, ...args: string[]): Promise<Buffer> {
  const src = join(dir, "src");
  await run("mkdir", ["-p", src]);
  await writeFile(join(src, "first.txt"), "first file\n");
  await writeFile(join(src, "second.txt"), "x".repeat(3000));
  const out = join(dir, "a.tar");
  await run("tar", [...args, "-cf", out, "-C", src, "first.txt", "second.txt"]);
  return readFile(out);
}

describe("tar reader rejects bad input", () => {
  it("truncated archives (mid-payload, mid-header, missing end marker)", async () => {
    await withTempDir(async (dir) => {
      const tar = await gnuArchive(dir, "--format=gnu");
      const second = headerOffset(tar, "second.txt");
      await expectError(
        tar.subarray(0, second + 512 + 100),
        "TAR_FORMAT",
        /"second\.txt": truncated: .*short of the payload/,
      );
      await expectError(tar.subarray(0, second + 200), "TAR_FORMAT", /header at offset \d+: truncated/);
      await expectError(tar.subarray(0, second), "TAR_FORMAT", /padding|end-of-archive/);
      const end = second + 512 + 3072;
      await expectError(tar.subarray(0, end), "TAR_FORMAT", /without the end-of-archive marker/);
      await expectError(tar.subarray(0, end + 512), "TAR_FORMAT", /only one zero block/);
    });
  });

  it("wrong header checksum", async () => {
    await withTempDir(async (dir) => {
      const tar = await gnuArchive(dir, "--format=ustar");
      const off = headerOffset(tar, "second.txt");
      tar[off + 100] = 0x37; // mode digit changed, checksum left alone
      await expectError(tar, "TAR_FORMAT", /"second\.txt" \(header at offset 1024\): wrong header checksum/);
    });
  });

  it("garbage in a numeric field", async () => {
    await withTempDir(async (dir) => {
      const tar = await gnuArchive(dir, "--format=ustar");
      const off = headerOffset(tar, "second.txt");
      Buffer.from("12x4567\0").copy(tar, off + 108);
      fixChecksum(tar, off);
      await expectError(tar, "TAR_FORMAT", /"second\.txt".*malformed uid field "12x4567"/);
    });
  });

  it("PAX record with a wrong length", async () => {
    await withTempDir(async (dir) => {
      const tar = await gnuArchive(dir, "--format=posix");
      const text = tar.toString("latin1");
      const at = text.indexOf(" mtime=");
      assert.ok(at > 0, "GNU tar wrote no PAX mtime");
      let start = at;
      while (tar[start - 1]! >= 0x30 && tar[start - 1]! <= 0x39) start--;
      const length = Number(text.slice(start, at));
      Buffer.from(String(length + 1)).copy(tar, start);
      await expectError(tar, "TAR_FORMAT", /PaxHeaders.*PAX record at byte \d+ .*(length|newline)/);
    });
  });

  it("GNU sparse files, old ('S') and PAX variants", async () => {
    await withTempDir(async (dir) => {
      const src = join(dir, "src");
      await run("mkdir", ["-p", src]);
      await run("sh", [
        "-c",
        `truncate -s 4M ${src}/holes.img && printf data | dd of=${src}/holes.img bs=1 seek=2000000 conv=notrunc status=none`,
      ]);
      for (const format of ["--format=gnu", "--format=posix"]) {
        const out = join(dir, "sparse.tar");
        await run("tar", [format, "--sparse", "-cf", out, "-C", src, "holes.img"]);
        await expectError(await readFile(out), "TAR_UNSUPPORTED", /holes\.img.*sparse/);
      }
    });
  });

  it("PAX global header and unknown typeflags", async () => {
    await withTempDir(async (dir) => {
      const global = join(dir, "global.tar");
      await run("python3", [PYTAR, "global", global]);
      await expectError(await readFile(global), "TAR_UNSUPPORTED", /PAX global header/);
      const labelled = await gnuArchive(dir, "--format=gnu", "--label=VOLUME1");
      await expectError(labelled, "TAR_UNSUPPORTED", /"VOLUME1".*unknown typeflag 'V'/);
    });
  });
});

describe("damaged archives never escape as anything but a tar error", () => {
  it("random byte flips and truncations of a PAX and a GNU archive", async () => {
    await withTempDir(async (dir) => {
      const src = join(dir, "src");
      await run("python3", [PYTAR, "mktree", src, "full"]);
      let seed = 12345;
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      for (const format of ["--format=posix", "--format=gnu"]) {
        const archive = join(dir, "a.tar");
        await run("tar", [format, "--xattrs", "--xattrs-include=*", "-cf", archive, "-C", src, "."]);
        const original = await readFile(archive);
        let failures = 0;
        for (let i = 0; i < 300; i++) {
          const damaged = Buffer.from(original);
          // Headers and PAX data live in the first blocks of each entry: aim there often.
          const at = random(2) === 0 ? random(Math.min(damaged.length, 8192)) : random(damaged.length);
          damaged[at] = random(256);
          const input = random(4) === 0 ? damaged.subarray(0, random(damaged.length)) : damaged;
          try {
            await readAll(input);
          } catch (err) {
            assert.ok(isRootstockError(err, "TAR_FORMAT", "TAR_UNSUPPORTED"), `byte ${at}: ${String(err)}`);
            assert.ok(!(err as Error).message.includes("\n"));
            failures++;
          }
        }
        assert.ok(failures > 30, `only ${failures} of 300 damaged archives failed`);
      }
    });
  });
});
