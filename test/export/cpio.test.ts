import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { promisify } from "node:util";
import { isRootstockError } from "../../src/errors.js";
import {
  type CpioEntry,
  encodeNewcHeader,
  entriesFromCpio,
  type NewcHeader,
  readCpio,
  writeCpio,
} from "../../src/export/cpio.js";
import type { ExportEntry } from "../../src/export/entry.js";
import { writeDirectory } from "../../src/export/safe-dir.js";
import { debianRootfsDir } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";
import { expectedListing, listTree, sampleEntries, withoutNlink } from "./tree-listing.js";

const run = promisify(execFile);
const sh = (script: string, cwd?: string) => run("sh", ["-c", script], { cwd, maxBuffer: 256 * 1024 * 1024 });

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

async function readAll(bytes: Uint8Array): Promise<Array<{ entry: CpioEntry; data: Buffer }>> {
  const out: Array<{ entry: CpioEntry; data: Buffer }> = [];
  for await (const entry of readCpio(Readable.from([bytes])))
    out.push({ entry, data: await collect(entry.payload) });
  return out;
}

/** The sample tree plus a 300 kB file given by path (so the writer streams a real file). */
async function sample(dir: string) {
  const bigPath = join(dir, "big.bin");
  const big = Buffer.alloc(300_001);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
  await writeFile(bigPath, big);
  const entries = sampleEntries(bigPath, big.length);
  const contents = new Map<string, string>();
  for (const e of entries) {
    if (e.type !== "file") continue;
    const data =
      e.content?.kind === "bytes" ? e.content.data : e.content?.kind === "path" ? big : Buffer.alloc(0);
    contents.set(e.path, createHash("sha256").update(data).digest("hex"));
  }
  return { entries, contents };
}

test("GNU cpio, bsdtar and our directory writer extract our archive to the same tree the entries describe", async () => {
  await withTempDir(async (dir) => {
    const { entries, contents } = await sample(dir);
    const archive = join(dir, "out.cpio");
    await pipeline(Readable.from(writeCpio(entries)), createWriteStream(archive));
    const size = (await readFile(archive)).length;
    assert.equal(size % 512, 0, "padded to 512 like GNU cpio");

    const gnu = join(dir, "gnu");
    const bsd = join(dir, "bsd");
    await mkdir(gnu);
    await mkdir(bsd);
    await sh(`cpio -idmu --quiet --no-absolute-filenames < ${archive}`, gnu);
    await run("bsdtar", ["-xpf", archive, "--numeric-owner", "-C", bsd]);
    const ours = join(dir, "ours");
    const result = await writeDirectory(ours, entries, { durable: false });
    assert.deepEqual(result.skipped, []);

    const expected = expectedListing(entries, contents);
    const oursListing = await listTree(ours);
    assert.deepEqual(withoutNlink(oursListing), expected);
    // cpio leaves the extraction root's own metadata to the directory it runs in.
    const strip = (rows: Awaited<ReturnType<typeof listTree>>) => rows.filter((r) => r.path !== ".");
    // GNU cpio 2.13 sets no mtime on directories (their children change it) nor on symlinks.
    const timesOfFilesOnly = (rows: Awaited<ReturnType<typeof listTree>>) =>
      strip(rows).map((r) => (r.type === "d" || r.type === "l" ? { ...r, mtime: 0 } : r));
    assert.deepEqual(
      timesOfFilesOnly(await listTree(gnu)),
      timesOfFilesOnly(oursListing),
      "GNU cpio -i agrees",
    );
    assert.deepEqual(strip(await listTree(bsd)), strip(oursListing), "bsdtar -x agrees");
    // The hardlink group really is one inode of three links.
    assert.equal(oursListing.find((r) => r.path === "bin/tool")?.nlink, 3);
  });
});

test("our archive puts hardlink data on the last link, numbers inodes from 1 and writes uppercase hex", async () => {
  await withTempDir(async (dir) => {
    const { entries } = await sample(dir);
    const read = await readAll(await collect(writeCpio(entries)));
    const names = read.map((r) => r.entry.newc.name);
    // Reading turns newc links back into tar semantics: the data carrier first, then links naming it.
    const carrier = read.find((r) => r.entry.newc.name === "bin/zz-tool")!;
    assert.equal(carrier.entry.header.type, "file");
    assert.equal(carrier.data.toString(), "tool\n");
    for (const link of ["bin/a-tool", "bin/tool"]) {
      const r = read.find((x) => x.entry.newc.name === link)!;
      assert.equal(r.entry.header.type, "hardlink");
      assert.equal(r.entry.header.linkname, "bin/zz-tool");
      assert.equal(r.entry.newc.ino, carrier.entry.newc.ino);
      assert.equal(r.entry.newc.nlink, 3);
    }
    assert.equal(names[0], ".");
    assert.equal(read[0]!.entry.newc.ino, 1);
    const header = encodeNewcHeader({ ...read[0]!.entry.newc, mode: 0o40755 });
    assert.match(header.toString("latin1", 0, 110), /^070701[0-9A-F]{104}$/);
  });
});

test("the same entries in any order give the same bytes, and a read-then-write round trip is byte-identical", async () => {
  await withTempDir(async (dir) => {
    const { entries } = await sample(dir);
    const first = await collect(writeCpio(entries));
    const shuffled = [...entries].reverse();
    assert.ok((await collect(writeCpio(shuffled))).equals(first));

    const again: ExportEntry[] = [];
    for (const { entry, data } of await readAll(first)) {
      const h = entry.header;
      again.push({
        path: h.name,
        type: h.type,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        mtime: h.mtime,
        size: h.size,
        devmajor: h.devmajor,
        devminor: h.devminor,
        ...(h.linkname ? { linkTarget: h.linkname } : {}),
        ...(h.type === "file" ? { content: { kind: "bytes" as const, data } } : {}),
      });
    }
    assert.ok((await collect(writeCpio(again))).equals(first));
  });
});

test("mtimes are clamped: before 1970 to 0, above mtimeClamp to it", async () => {
  const entries: ExportEntry[] = [
    { path: "old", type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: -5, nsec: 0 } },
    {
      path: "new",
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: { sec: 2_000_000_000, nsec: 5 },
    },
  ];
  const read = await readAll(await collect(writeCpio(entries, { mtimeClamp: 1_800_000_000 })));
  assert.deepEqual(
    read.map((r) => [r.entry.header.name, r.entry.header.mtime.sec]),
    [
      ["new", 1_800_000_000],
      ["old", 0],
    ],
  );
});

async function makeSourceTree(src: string): Promise<void> {
  await mkdir(src);
  await sh(
    [
      "mkdir -p usr/bin etc/deep/er && chmod 2775 etc/deep",
      "printf 'hello world\\n' > usr/bin/prog && chmod 755 usr/bin/prog",
      "ln usr/bin/prog usr/bin/prog2 && ln usr/bin/prog etc/prog3",
      "head -c 70001 /dev/urandom > etc/random && : > etc/empty && ln etc/empty etc/empty2",
      "ln -s ../usr/bin/prog etc/deep/er/link && mkfifo etc/fifo && mknod etc/null c 1 3",
      "printf 'x' > 'etc/with space' && chown 1234:4321 'etc/with space'",
      "touch -h -d @1600000000 etc/deep/er/link && touch -d @1500000000 etc/random",
    ].join(" && "),
    src,
  );
}

/** Compares what our reader yields with the files on disk it was made from. */
async function assertMatchesSource(
  read: Array<{ entry: CpioEntry; data: Buffer }>,
  src: string,
): Promise<void> {
  const listing = await listTree(src);
  const clean = (name: string) => (name === "." ? "." : name.replace(/^\.\//, ""));
  const seen = new Map(read.map((r) => [clean(r.entry.header.name), r]));
  assert.deepEqual([...seen.keys()].sort(), listing.map((r) => r.path).sort());
  const letter: Record<string, string> = {
    file: "f",
    hardlink: "f",
    dir: "d",
    symlink: "l",
    char: "c",
    block: "b",
    fifo: "p",
  };
  const groups = new Map<string, string>();
  for (const row of listing) {
    const { entry, data } = seen.get(row.path)!;
    const h = entry.header;
    assert.equal(letter[h.type], row.type, row.path);
    assert.equal(h.mode.toString(8), row.mode, row.path);
    assert.equal(h.uid, row.uid, row.path);
    assert.equal(h.gid, row.gid, row.path);
    assert.equal(h.mtime.sec, row.mtime, row.path);
    if (h.type === "symlink") assert.equal(h.linkname, row.link);
    if (h.type === "char") assert.equal(`${h.devmajor.toString(16)}:${h.devminor.toString(16)}`, row.rdev);
    if (h.type === "file") {
      assert.equal(createHash("sha256").update(data).digest("hex"), row.sha256, row.path);
      groups.set(row.path, row.path);
    }
    if (h.type === "hardlink") groups.set(row.path, clean(h.linkname));
  }
  // Every hardlink group on disk is one group in the archive, whatever member carried the data.
  for (const row of listing.filter((r) => r.type === "f")) {
    const sameInode = listing.filter((r) => r.inode === row.inode).map((r) => groups.get(r.path));
    assert.equal(new Set(sameInode).size, 1, `hardlink group of ${row.path}`);
  }
}

test("reads archives written by GNU cpio (newc and crc) and bsdtar, hardlinks included", async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, "src");
    await makeSourceTree(src);
    await sh(`find . | cpio -o --quiet -H newc > ${dir}/gnu.cpio`, src);
    await sh(`find . | cpio -o --quiet -H crc > ${dir}/crc.cpio`, src);
    await run("bsdtar", ["--format", "newc", "-cf", join(dir, "bsd.cpio"), "-C", src, "."]);
    for (const name of ["gnu.cpio", "crc.cpio", "bsd.cpio"]) {
      await assertMatchesSource(await readAll(await readFile(join(dir, name))), src);
    }
  });
});

test("a 070702 archive with a corrupted byte fails its checksum, naming the entry", async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, "f"), "some content here");
    const { stdout } = await run("sh", ["-c", "echo f | cpio -o --quiet -H crc | base64 -w0"], { cwd: dir });
    const bytes = Buffer.from(stdout, "base64");
    const at = bytes.indexOf("some content");
    bytes[at] = bytes[at]! ^ 1;
    await assert.rejects(
      readAll(bytes),
      (err) => isRootstockError(err, "INVALID_FORMAT") && /"f".*checksum/.test(err.message),
    );
  });
});

test("cpio.zst: our archive compressed with zstd lists with zstd -d | cpio -t and reads back", async () => {
  await withTempDir(async (dir) => {
    const { entries } = await sample(dir);
    const zst = join(dir, "initrd.cpio.zst");
    const zstd = execFile("zstd", ["-q", "-19", "-o", zst]);
    await pipeline(Readable.from(writeCpio(entries)), zstd.stdin!);
    await new Promise((resolve, reject) =>
      zstd.on("close", (code) => (code === 0 ? resolve(code) : reject(code))),
    );
    const { stdout } = await sh(`zstd -dc ${zst} | cpio -t --quiet`);
    assert.deepEqual(stdout.trim().split("\n").sort(), entries.map((e) => e.path).sort());
    const { stdout: raw } = await run("sh", ["-c", `zstd -dc ${zst} | base64 -w0`], {
      maxBuffer: 64 * 1024 * 1024,
    });
    assert.equal((await readAll(Buffer.from(raw, "base64"))).length, entries.length);
  });
});

test("Debian essential rootfs: GNU cpio archive -> our reader -> our directory writer gives the same tree", async () => {
  const rootfs = await debianRootfsDir("essential");
  await withTempDir(async (dir) => {
    const archive = join(dir, "rootfs.cpio");
    await sh(`find . | LC_ALL=C sort | cpio -o --quiet -H newc > ${archive}`, rootfs);
    const out = join(dir, "out");
    const result = await writeDirectory(out, entriesFromCpio(createReadStream(archive)), { durable: false });
    assert.deepEqual(result.skipped, []);
    assert.ok(result.entries > 1000);
    assert.deepEqual(await listTree(out), await listTree(rootfs));
  });
});

/** A crafted newc header (the name and its padding) for the hostile cases. */
export function craft(fields: Partial<NewcHeader> & { name: string }): Buffer {
  return encodeNewcHeader({
    ino: 1,
    mode: 0o100644,
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
    ...fields,
  });
}
