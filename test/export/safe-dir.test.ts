import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, lstat, mkdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ExportEntry } from "../../src/export/entry.js";
import { type SafeDirResult, writeDirectory } from "../../src/export/safe-dir.js";
import type { ProgressEvent } from "../../src/progress.js";
import { withTempDir } from "../helpers/tmp.js";
import { metadataEntries } from "./tree-listing.js";

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const t = (sec: number, nsec = 0) => ({ sec, nsec });

/** A store object as the cas keeps it: read-only, owned, with an mtime. */
async function storeObject(path: string, text: string, mode: number, mtime: number): Promise<void> {
  await writeFile(path, text);
  await chmod(path, mode);
  await utimes(path, mtime, mtime);
}

test("hardlink mode links store objects whose metadata matches, copies the others and never changes an object", async () => {
  await withTempDir(async (dir) => {
    const store = join(dir, "store");
    await mkdir(store);
    await storeObject(join(store, "same"), "same\n", 0o755, 1_600_000_000);
    await storeObject(join(store, "other"), "other\n", 0o444, 1_600_000_000);
    const before = await stat(join(store, "other"));
    const file = (
      path: string,
      object: string,
      mode: number,
      extra: Partial<ExportEntry> = {},
    ): ExportEntry => ({
      path,
      type: "file",
      mode,
      uid: 0,
      gid: 0,
      mtime: t(1_600_000_000),
      size: object === "same" ? 5 : 6,
      content: { kind: "path", path: join(store, object) },
      ...extra,
    });
    const entries: ExportEntry[] = [
      { path: ".", type: "dir", mode: 0o755, uid: 0, gid: 0, mtime: t(1), size: 0 },
      file("linked", "same", 0o755),
      {
        path: "also-linked",
        type: "hardlink",
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: t(0),
        size: 0,
        linkTarget: "linked",
      },
      file("other-mode", "other", 0o644),
      file("other-time", "other", 0o444, { mtime: t(1_700_000_000) }),
      file("with-xattr", "same", 0o755, { xattrs: [["user.note", Buffer.from("hi")]] }),
    ];
    const out = join(dir, "out");
    const result = await writeDirectory(out, entries, { durable: false });
    assert.equal(result.linked, 1);
    assert.equal(result.copied, 3);
    const object = await stat(join(store, "same"));
    assert.equal((await stat(join(out, "linked"))).ino, object.ino);
    assert.equal((await stat(join(out, "also-linked"))).ino, object.ino);
    assert.equal(object.nlink, 3);
    assert.equal((await stat(join(out, "other-mode"))).mode & 0o7777, 0o644);
    assert.equal((await stat(join(out, "other-time"))).mtimeMs, 1_700_000_000_000);
    const after = await stat(join(store, "other"));
    assert.deepEqual([after.mode, after.mtimeMs, after.nlink], [before.mode, before.mtimeMs, 1]);

    const copies = join(dir, "copies");
    const copied = await writeDirectory(copies, entries, { content: "copy", durable: false });
    assert.equal(copied.linked, 0);
    assert.notEqual((await stat(join(copies, "linked"))).ino, object.ino);
    assert.equal(await readFile(join(copies, "linked"), "utf8"), "same\n");
  });
});

test("metadata lands in the right order: setuid after chown, caps after chown, directory times last, symlink times", async (t) => {
  if (!isRoot) return t.skip("needs root");
  await withTempDir(async (dir) => {
    const out = join(dir, "out");
    const events: ProgressEvent[] = [];
    const result = await writeDirectory(out, metadataEntries(), { progress: (e) => events.push(e) });
    assert.deepEqual(result.skipped, []);
    const suid = await lstat(join(out, "ro/sub/suid"));
    assert.deepEqual([suid.mode & 0o7777, suid.uid, suid.gid, suid.mtimeMs], [0o4755, 1000, 50, 4_000_000]);
    const ro = await lstat(join(out, "ro"));
    assert.deepEqual([ro.mode & 0o7777, ro.uid, ro.mtimeMs], [0o555, 1000, 2_000_000]);
    assert.equal((await lstat(join(out, "ro/sub"))).mtimeMs, 3_000_500);
    const link = await lstat(join(out, "ro/link"));
    assert.deepEqual([link.isSymbolicLink(), link.uid, link.mtimeMs], [true, 7, 6_000_000]);
    const tty = await lstat(join(out, "ro/tty"));
    assert.deepEqual(
      [tty.isCharacterDevice(), tty.rdev, tty.mode & 0o7777, tty.gid],
      [true, (4 << 8) | 1, 0o620, 5],
    );
    assert.ok((await lstat(join(out, "ro/fifo"))).isFIFO());
    const { stdout } = await run("getfattr", [
      "-h",
      "-d",
      "-m",
      "-",
      "-e",
      "hex",
      "--absolute-names",
      join(out, "ro/ping"),
    ]);
    assert.match(stdout, /security.capability=0x0100000200200000000000000000000000000000/);
    assert.match(stdout, /user.binary=0x0001ff3d0a/);
    assert.match(stdout, /user.empty/);
    const weird = await run("getfattr", [
      "-h",
      "-d",
      "-m",
      "-",
      "-e",
      "hex",
      "--absolute-names",
      join(out, "ro/weird name\nwith=eq"),
    ]);
    assert.match(weird.stdout, /user.k\\075v=0x78/);
    assert.ok(events.some((e) => e.type === "done"));
  });
});

test("as an unprivileged user the export completes and lists every owner, device and xattr it skipped", async (t) => {
  if (!isRoot) return t.skip("needs root to switch to nobody");
  await withTempDir(async (dir) => {
    await chmod(dir, 0o777);
    const script = fileURLToPath(new URL("./export-as-user.ts", import.meta.url));
    const out = join(dir, "out");
    const { stdout } = await run("setpriv", [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      process.execPath,
      "--import",
      "tsx",
      script,
      out,
    ]);
    const result = JSON.parse(stdout) as SafeDirResult;
    const skipped = result.skipped.map((s) => `${s.what} ${s.path}`).sort();
    assert.deepEqual(skipped, [
      "device ro/tty",
      "owner .",
      "owner ro",
      "owner ro/fifo",
      "owner ro/link",
      "owner ro/ping",
      "owner ro/sub",
      "owner ro/sub/suid",
      "owner ro/weird name\nwith=eq",
      "xattr ro/ping",
    ]);
    assert.ok(result.skipped.every((s) => s.reason.length > 0));
    const ping = await lstat(join(out, "ro/ping"));
    assert.equal(ping.uid, 65534);
    const { stdout: attrs } = await run("getfattr", [
      "-h",
      "-d",
      "-m",
      "-",
      "-e",
      "hex",
      "--absolute-names",
      join(out, "ro/ping"),
    ]);
    assert.match(attrs, /user.binary=0x0001ff3d0a/);
    assert.doesNotMatch(attrs, /security.capability/);
    assert.ok((await lstat(join(out, "ro/fifo"))).isFIFO());
    assert.equal((await lstat(join(out, "ro"))).mode & 0o7777, 0o555);
  });
});

test("a target whose parent is missing is refused with NOT_FOUND", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(writeDirectory(join(dir, "missing", "out"), []), /parent directory does not exist/);
  });
});
