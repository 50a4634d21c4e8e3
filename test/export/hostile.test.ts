/**
 * Hostile input: crafted entries and crafted cpio archives each fail with a
 * one-line RootstockError naming the entry, and nothing changes outside the target
 * (a sentinel directory beside it stays byte-for-byte the same).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { link, lstat, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type ErrorCode, isRootstockError } from "../../src/errors.js";
import { encodeNewcHeader, entriesFromCpio, type NewcHeader, readCpio } from "../../src/export/cpio.js";
import type { ExportEntry } from "../../src/export/entry.js";
import {
  INCOMPLETE_SUFFIX,
  isCompleteExport,
  PARTIAL_SUFFIX,
  writeDirectory,
} from "../../src/export/safe-dir.js";
import { withTempDir } from "../helpers/tmp.js";

const t0 = { sec: 1_700_000_000, nsec: 0 };
const dir = (path: string): ExportEntry => ({
  path,
  type: "dir",
  mode: 0o755,
  uid: 0,
  gid: 0,
  mtime: t0,
  size: 0,
});
const file = (path: string, text = "evil"): ExportEntry => ({
  path,
  type: "file",
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtime: t0,
  size: Buffer.byteLength(text),
  content: { kind: "bytes", data: Buffer.from(text) },
});
const symlinkEntry = (path: string, target: string): ExportEntry => ({
  path,
  type: "symlink",
  mode: 0o777,
  uid: 0,
  gid: 0,
  mtime: t0,
  size: 0,
  linkTarget: target,
});
const hardlink = (path: string, target: string): ExportEntry => ({
  ...file(path, ""),
  type: "hardlink",
  linkTarget: target,
});

/** A temp dir holding `sentinel/` (a file and a subdirectory) and a target path beside it. */
async function withSentinel(fn: (ctx: { root: string; target: string; sentinel: string }) => Promise<void>) {
  await withTempDir(async (root) => {
    const sentinel = join(root, "sentinel");
    await mkdir(join(sentinel, "sub"), { recursive: true });
    await writeFile(join(sentinel, "keep"), "precious\n");
    const before = await snapshot(root);
    await fn({ root, target: join(root, "target"), sentinel });
    // Whatever happened in the target, the sentinel is untouched and nothing new sits beside it.
    const after = await snapshot(root);
    for (const [path, state] of before) {
      if (path === "target" || path.startsWith("target/")) continue;
      assert.equal(after.get(path), state, `${path} changed`);
    }
    for (const path of after.keys()) {
      assert.ok(
        before.has(path) ||
          path === "target" ||
          path.startsWith("target/") ||
          path === `target${INCOMPLETE_SUFFIX}`,
        `${path} appeared outside the target`,
      );
    }
  });
}

async function snapshot(root: string, rel = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await readdir(join(root, rel))) {
    const path = rel ? `${rel}/${name}` : name;
    const st = await lstat(join(root, path));
    const data = st.isFile() ? (await readFile(join(root, path))).toString("hex") : "";
    out.set(path, `${st.mode.toString(8)} ${st.ino} ${st.nlink} ${st.mtimeMs} ${data}`);
    if (st.isDirectory()) for (const [k, v] of await snapshot(root, path)) out.set(k, v);
  }
  return out;
}

async function expectRefusal(
  promise: Promise<unknown>,
  code: ErrorCode,
  names: string | RegExp,
): Promise<RootstockError> {
  let caught: unknown;
  await promise.catch((err) => {
    caught = err;
  });
  assert.ok(isRootstockError(caught, code), `expected ${code}, got ${String(caught)}`);
  const message = (caught as Error).message;
  assert.ok(!message.includes("\n"), "one-line message");
  if (typeof names === "string")
    assert.ok(message.includes(names), `message ${message} should name ${names}`);
  else assert.match(message, names);
  return caught as RootstockError;
}
type RootstockError = Error & { code: ErrorCode };

interface Case {
  name: string;
  entries: (ctx: { sentinel: string }) => ExportEntry[];
  code: ErrorCode;
  names: string | RegExp;
}

const writerCases: Case[] = [
  { name: "path traversal", entries: () => [file("../escape")], code: "UNSAFE_PATH", names: '"../escape"' },
  {
    name: "traversal inside",
    entries: () => [dir("a"), file("a/../../escape")],
    code: "UNSAFE_PATH",
    names: "a/../../escape",
  },
  { name: "absolute name", entries: () => [file("/tmp/evil")], code: "UNSAFE_PATH", names: '"/tmp/evil"' },
  { name: "empty name", entries: () => [file("")], code: "UNSAFE_PATH", names: '""' },
  { name: "NUL in name", entries: () => [file("a\0b")], code: "UNSAFE_PATH", names: "NUL" },
  { name: "empty component", entries: () => [dir("a"), file("a//b")], code: "UNSAFE_PATH", names: "a//b" },
  { name: "dot component", entries: () => [dir("a"), file("a/./b")], code: "UNSAFE_PATH", names: "a/./b" },
  {
    name: "symlinked parent (relative)",
    entries: () => [symlinkEntry("link", "../sentinel"), file("link/evil")],
    code: "UNSAFE_PATH",
    names: '"link/evil"',
  },
  {
    name: "symlinked parent (absolute)",
    entries: ({ sentinel }) => [symlinkEntry("link", sentinel), dir("link/sub"), file("link/sub/evil")],
    code: "UNSAFE_PATH",
    names: '"link/sub"',
  },
  {
    name: "directory turned into a symlink",
    entries: ({ sentinel }) => [dir("d"), symlinkEntry("d", sentinel), file("d/evil")],
    code: "INVALID_ARGUMENT",
    names: /"d": duplicate/,
  },
  {
    name: "hardlink to outside",
    entries: () => [hardlink("h", "../sentinel/keep")],
    code: "UNSAFE_PATH",
    names: '"../sentinel/keep"',
  },
  {
    name: "hardlink to an absolute path",
    entries: ({ sentinel }) => [hardlink("h", join(sentinel, "keep"))],
    code: "UNSAFE_PATH",
    names: "absolute",
  },
  {
    name: "hardlink through a symlink",
    entries: () => [symlinkEntry("s", "../sentinel/keep"), hardlink("h", "s")],
    code: "UNSAFE_PATH",
    names: /"h": hardlink target "s" is not a regular file/,
  },
  {
    name: "hardlink to a directory",
    entries: () => [dir("d"), hardlink("h", "d")],
    code: "UNSAFE_PATH",
    names: '"h"',
  },
  {
    name: "hardlink to a later file",
    entries: () => [hardlink("h", "f"), file("f")],
    code: "UNSAFE_PATH",
    names: '"h"',
  },
  {
    name: "device node outside",
    entries: () => [{ ...dir("x"), path: "../null", type: "char", devmajor: 1, devminor: 3 }],
    code: "UNSAFE_PATH",
    names: '"../null"',
  },
  {
    name: "duplicate entries",
    entries: () => [file("a"), file("a", "other")],
    code: "INVALID_ARGUMENT",
    names: /"a": duplicate/,
  },
  {
    name: "duplicate spelled differently",
    entries: () => [dir("a"), dir("./a/")],
    code: "INVALID_ARGUMENT",
    names: /"a": duplicate/,
  },
  {
    name: "huge declared size",
    entries: () => [{ ...file("big", "abc"), size: 2 ** 40 }],
    code: "SIZE_MISMATCH",
    names: /"big": content has 3 bytes, declared 1099511627776/,
  },
  {
    name: "content longer than declared",
    entries: () => [{ ...file("long", "abcdef"), size: 2 }],
    code: "SIZE_MISMATCH",
    names: '"long"',
  },
  {
    name: "file source of another size",
    entries: ({ sentinel }) => [
      { ...file("f"), size: 1, content: { kind: "path", path: join(sentinel, "keep") } },
    ],
    code: "SIZE_MISMATCH",
    names: '"f"',
  },
  {
    name: "missing parent",
    entries: () => [file("x/y")],
    code: "INVALID_ARGUMENT",
    names: /"x\/y": parent "x"/,
  },
  { name: "file under a file", entries: () => [file("f"), file("f/g")], code: "UNSAFE_PATH", names: '"f/g"' },
  { name: "root that is not a directory", entries: () => [file(".")], code: "UNSAFE_PATH", names: "root" },
];

describe("safe directory writer refuses hostile entries", () => {
  for (const c of writerCases) {
    test(c.name, async () => {
      await withSentinel(async ({ target, sentinel }) => {
        await expectRefusal(
          writeDirectory(target, c.entries({ sentinel }), { durable: false }),
          c.code,
          c.names,
        );
        assert.ok(!existsSync(target), "a failed fresh export leaves no target");
        assert.ok(!existsSync(target + PARTIAL_SUFFIX), "and no partial directory");
      });
    });
  }
});

describe("safe directory writer and what is already on disk", () => {
  test("a non-empty target needs force and is left alone without it", async () => {
    await withSentinel(async ({ target }) => {
      await mkdir(target);
      await writeFile(join(target, "old"), "old");
      await expectRefusal(
        writeDirectory(target, [file("new")], { durable: false }),
        "ALREADY_EXISTS",
        target,
      );
      assert.deepEqual(await readdir(target), ["old"]);
    });
  });

  test("a target that is a symlink is never followed, even with force", async () => {
    await withSentinel(async ({ target, sentinel }) => {
      await symlink(sentinel, target);
      await expectRefusal(
        writeDirectory(target, [file("evil")], { force: true, durable: false }),
        "UNSAFE_PATH",
        target,
      );
    });
  });

  test("with force, symlinks and hardlinks in the way are replaced, never written through", async () => {
    await withSentinel(async ({ target, sentinel }) => {
      await mkdir(target);
      await symlink(sentinel, join(target, "etc"));
      await symlink(join(sentinel, "keep"), join(target, "f"));
      await link(join(sentinel, "keep"), join(target, "store-object"));
      const result = await writeDirectory(
        target,
        [dir("."), dir("etc"), file("etc/passwd", "root"), file("f", "new"), file("store-object", "changed")],
        { force: true, durable: false },
      );
      assert.equal(result.entries, 5);
      assert.ok((await lstat(join(target, "etc"))).isDirectory());
      assert.equal(await readFile(join(target, "etc/passwd"), "utf8"), "root");
      assert.equal(await readFile(join(target, "store-object"), "utf8"), "changed");
      assert.equal(await readFile(join(sentinel, "keep"), "utf8"), "precious\n");
      assert.ok(await isCompleteExport(target));
    });
  });

  test("a failed in-place export keeps its incomplete marker beside the target", async () => {
    await withSentinel(async ({ target }) => {
      await mkdir(target);
      const failing: ExportEntry = {
        ...file("f"),
        size: 10,
        content: {
          kind: "stream",
          async *open() {
            yield Buffer.from("12345");
            throw new Error("source went away");
          },
        },
      };
      await assert.rejects(
        writeDirectory(target, [dir("a"), failing], { durable: false }),
        /source went away/,
      );
      assert.ok(existsSync(target + INCOMPLETE_SUFFIX));
      assert.equal(await isCompleteExport(target), false);
      // Re-running over the incomplete export (now non-empty) takes force and completes it.
      await writeDirectory(target, [dir("a"), file("f")], { force: true, durable: false });
      assert.ok(await isCompleteExport(target));
      assert.ok(!existsSync(target + INCOMPLETE_SUFFIX));
    });
  });

  test("a killed export leaves only a partial directory; the next one needs force", async () => {
    await withSentinel(async ({ root, target }) => {
      const script = fileURLToPath(new URL("./hang-export.ts", import.meta.url));
      const child = spawn(process.execPath, ["--import", "tsx", script, target], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      // The child prints once its first file is half written, then waits forever.
      await new Promise<void>((resolve, reject) => {
        child.stdout.once("data", () => resolve());
        child.once("exit", (code) => reject(new Error(`child exited ${code}`)));
      });
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
      assert.ok(!existsSync(target), "no target that looks whole");
      assert.ok(existsSync(target + PARTIAL_SUFFIX));
      assert.equal(await isCompleteExport(target), false);
      await expectRefusal(
        writeDirectory(target, [file("f")], { durable: false }),
        "ALREADY_EXISTS",
        "interrupted",
      );
      await writeDirectory(target, [file("f", "done")], { force: true, durable: false });
      assert.deepEqual(await readdir(root), ["sentinel", "target"]);
      assert.equal(await readFile(join(target, "f"), "utf8"), "done");
    });
  });
});

function craft(fields: Partial<NewcHeader> & { name: string }, data = ""): Buffer {
  const header = encodeNewcHeader({
    ino: 1,
    mode: 0o100644,
    uid: 0,
    gid: 0,
    nlink: 1,
    mtime: 0,
    size: Buffer.byteLength(data),
    devmajor: 0,
    devminor: 0,
    rdevmajor: 0,
    rdevminor: 0,
    check: 0,
    ...fields,
  });
  const body = Buffer.from(data);
  return Buffer.concat([header, body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
}
const trailer = () => craft({ name: "TRAILER!!!", ino: 0, mode: 0 });
const DIR = 0o40755;

interface ArchiveCase {
  name: string;
  archive: (ctx: { sentinel: string }) => Buffer;
  code: ErrorCode;
  names: string | RegExp;
}

const archiveCases: ArchiveCase[] = [
  {
    name: "path traversal",
    archive: () => Buffer.concat([craft({ name: "../../escape" }, "x"), trailer()]),
    code: "UNSAFE_PATH",
    names: "../../escape",
  },
  {
    name: "absolute name",
    archive: () => Buffer.concat([craft({ name: "/etc/evil" }, "x"), trailer()]),
    code: "UNSAFE_PATH",
    names: "/etc/evil",
  },
  {
    name: "symlinked parent",
    archive: ({ sentinel }) =>
      Buffer.concat([
        craft({ name: "l", mode: 0o120777, ino: 1 }, sentinel),
        craft({ name: "l/evil", ino: 2 }, "x"),
        trailer(),
      ]),
    code: "UNSAFE_PATH",
    names: '"l/evil"',
  },
  {
    name: "hardlink group reaching outside",
    archive: () =>
      Buffer.concat([
        craft({ name: "a", ino: 7, nlink: 2 }),
        craft({ name: "../outside", ino: 7, nlink: 2 }, "data"),
        trailer(),
      ]),
    code: "UNSAFE_PATH",
    names: "../outside",
  },
  {
    name: "device node outside",
    archive: () =>
      Buffer.concat([craft({ name: "../null", mode: 0o20666, rdevmajor: 1, rdevminor: 3 }), trailer()]),
    code: "UNSAFE_PATH",
    names: "../null",
  },
  {
    name: "duplicate entries",
    archive: () =>
      Buffer.concat([craft({ name: "a", ino: 1 }, "1"), craft({ name: "a", ino: 2 }, "2"), trailer()]),
    code: "INVALID_ARGUMENT",
    names: /"a": duplicate/,
  },
  {
    name: "name with NUL",
    archive: () => {
      const bytes = craft({ name: "ok-name" }, "x");
      bytes[110 + 2] = 0;
      return Buffer.concat([bytes, trailer()]);
    },
    code: "INVALID_FORMAT",
    names: /"ok".*NUL/,
  },
  {
    name: "huge declared size",
    archive: () => craft({ name: "big", size: 0xffffffff }, "only this"),
    code: "INVALID_FORMAT",
    names: /"big"/,
  },
  {
    name: "huge name size",
    archive: () => craft({ name: "n" }).fill("F", 94, 102),
    code: "INVALID_FORMAT",
    names: /name size 4294967295/,
  },
  {
    name: "huge symlink target",
    archive: () => Buffer.concat([craft({ name: "s", mode: 0o120777, size: 100_000 }), trailer()]),
    code: "INVALID_FORMAT",
    names: /"s": symlink target size/,
  },
  {
    name: "directory with data",
    archive: () => Buffer.concat([craft({ name: "d", mode: DIR }, "data"), trailer()]),
    code: "INVALID_FORMAT",
    names: /"d": a dir entry declares 4 bytes/,
  },
  {
    name: "hardlink data twice",
    archive: () =>
      Buffer.concat([
        craft({ name: "a", ino: 5, nlink: 2 }, "one"),
        craft({ name: "b", ino: 5, nlink: 2 }, "two"),
        trailer(),
      ]),
    code: "INVALID_FORMAT",
    names: /"b": inode 5 carries data twice/,
  },
  {
    name: "bad magic",
    archive: () => Buffer.from("070707".padEnd(200, "0")),
    code: "INVALID_FORMAT",
    names: /odc/,
  },
  {
    name: "bad hex field",
    archive: () => craft({ name: "x" }).fill("g", 14, 15),
    code: "INVALID_FORMAT",
    names: /field mode is not 8 hex digits/,
  },
  {
    name: "missing trailer",
    archive: () => craft({ name: "x" }, "data"),
    code: "INVALID_FORMAT",
    names: /without TRAILER!!!/,
  },
  {
    name: "truncated data",
    archive: () => craft({ name: "cut" }, "0123456789").subarray(0, 115),
    code: "INVALID_FORMAT",
    names: /"cut"/,
  },
];

describe("cpio reader + safe writer refuse hostile archives", () => {
  for (const c of archiveCases) {
    test(c.name, async () => {
      await withSentinel(async ({ target, sentinel }) => {
        const archive = c.archive({ sentinel });
        await expectRefusal(
          writeDirectory(target, entriesFromCpio(Readable.from([archive])), { durable: false }),
          c.code,
          c.names,
        );
        assert.ok(!existsSync(target));
        assert.ok(!existsSync(target + PARTIAL_SUFFIX));
      });
    });
  }

  test("a device node inside the target is made as root, or listed as skipped otherwise", async () => {
    await withSentinel(async ({ target }) => {
      const archive = Buffer.concat([
        craft({ name: "dev", mode: DIR, ino: 1 }),
        craft({ name: "dev/null", mode: 0o20666, ino: 2, rdevmajor: 1, rdevminor: 3 }),
        trailer(),
      ]);
      const result = await writeDirectory(target, entriesFromCpio(Readable.from([archive])), {
        durable: false,
      });
      const st = await lstat(join(target, "dev/null")).catch(() => undefined);
      if (process.getuid?.() === 0) {
        assert.ok(st?.isCharacterDevice());
        assert.equal(st?.rdev, (1 << 8) | 3);
      } else {
        assert.deepEqual(
          result.skipped.map((s) => [s.path, s.what]),
          [["dev/null", "device"]],
        );
      }
    });
  });

  test("the reader never buffers a declared size: a 4 GiB entry over 12 bytes fails fast", async () => {
    const before = process.memoryUsage().rss;
    await expectRefusal(
      (async () => {
        for await (const entry of readCpio(
          Readable.from([craft({ name: "big", size: 0xffffffff }, "0123456789")]),
        )) {
          for await (const _ of entry.payload) {
          }
        }
      })(),
      "INVALID_FORMAT",
      /"big" \(4294967283 bytes missing\)/,
    );
    assert.ok(process.memoryUsage().rss - before < 256 * 1024 * 1024);
  });
});
