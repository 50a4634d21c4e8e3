/**
 * Reader → writer reproduces archives made by GNU tar, bsdtar and Python tarfile byte
 * for byte, and the reader's headers agree with Python tarfile and GNU tar's listing.
 */
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readTarFile } from "../../src/tar/index.js";
import { debianRootfsTar } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";
import {
  gnuList,
  gnuViewOf,
  type Member,
  memberOf,
  ourHeaders,
  PYTAR,
  pythonList,
  reemitFile,
  run,
  sha256File,
} from "./helpers.js";

interface Producer {
  label: string;
  tree: "full" | "ustar";
  make: (src: string, out: string) => Promise<unknown>;
  /** Expect GNU L/K or PAX extension headers in this format. */
  extensions: boolean;
  xattrs: boolean;
}

const gnuTar =
  (...format: string[]) =>
  (src: string, out: string) =>
    run("tar", [...format, "-cf", out, "-C", src, "."]);
const bsdtar =
  (...format: string[]) =>
  (src: string, out: string) =>
    run("bsdtar", [...format, "-cf", out, "-C", src, "."]);
const python = (format: string) => (src: string, out: string) =>
  run("python3", [PYTAR, "create", format, src, out]);

const PRODUCERS: Producer[] = [
  {
    label: "GNU tar --format=gnu",
    tree: "full",
    make: gnuTar("--format=gnu"),
    extensions: true,
    xattrs: false,
  },
  {
    label: "GNU tar --format=oldgnu",
    tree: "full",
    make: gnuTar("--format=oldgnu"),
    extensions: true,
    xattrs: false,
  },
  {
    label: "GNU tar --format=posix --xattrs",
    tree: "full",
    make: gnuTar("--format=posix", "--xattrs", "--xattrs-include=*"),
    extensions: true,
    xattrs: true,
  },
  {
    label: "GNU tar --format=ustar",
    tree: "ustar",
    make: gnuTar("--format=ustar"),
    extensions: false,
    xattrs: false,
  },
  { label: "bsdtar (default)", tree: "full", make: bsdtar(), extensions: true, xattrs: true },
  {
    label: "bsdtar --format pax",
    tree: "full",
    make: bsdtar("--format", "pax"),
    extensions: true,
    xattrs: true,
  },
  {
    label: "bsdtar --format ustar",
    tree: "ustar",
    make: bsdtar("--format", "ustar"),
    extensions: false,
    xattrs: false,
  },
  { label: "python GNU_FORMAT", tree: "full", make: python("gnu"), extensions: true, xattrs: false },
  { label: "python PAX_FORMAT + xattrs", tree: "full", make: python("pax"), extensions: true, xattrs: true },
  { label: "python USTAR_FORMAT", tree: "ustar", make: python("ustar"), extensions: false, xattrs: false },
];

function assertSameMembers(ours: Member[], theirs: Member[], what: string): void {
  assert.equal(ours.length, theirs.length, `${what}: entry count`);
  for (let i = 0; i < ours.length; i++) {
    const a = ours[i]!;
    const b = theirs[i]!;
    const where = `${what}: entry ${i} ${Buffer.from(b.name, "hex").toString()}`;
    assert.ok(Math.abs(a.mtime - b.mtime) < 1e-6, `${where}: mtime ${a.mtime} vs ${b.mtime}`);
    assert.deepEqual({ ...a, mtime: 0 }, { ...b, mtime: 0 }, where);
  }
}

describe("tar round trip against real producers", () => {
  for (const producer of PRODUCERS) {
    it(`${producer.label}: byte-exact re-emit, headers as Python tarfile reads them`, async () => {
      await withTempDir(async (dir) => {
        const src = join(dir, "src");
        const archive = join(dir, "out.tar");
        await run("python3", [PYTAR, "mktree", src, producer.tree]);
        await producer.make(src, archive);

        const { size } = await stat(archive);
        // Odd chunk sizes put block and record boundaries mid-chunk; recycled buffers
        // prove nothing keeps a chunk past its turn.
        for (const [chunkSize, recycle] of [
          [undefined, false],
          [511, false],
          [4096 + 17, false],
          [511, true],
          [1000, true],
        ] as const) {
          const result = await reemitFile(archive, chunkSize, recycle);
          assert.equal(result.length, size);
          assert.equal(result.sha256, await sha256File(archive), `re-emit differs (chunk size ${chunkSize})`);
          if (producer.extensions) assert.ok(result.extensionEntries > 0, "archive has no extension headers");
        }

        const headers = await ourHeaders(archive);
        assertSameMembers(headers.map(memberOf), await pythonList(archive), producer.label);
        if (producer.xattrs) {
          const small = headers.find((h) => h.name.endsWith("d/small.txt"));
          const bin = small?.xattrs.find(([k]) => k === "user.bin");
          assert.ok(bin, "binary xattr missing");
          assert.deepEqual(Buffer.from(bin[1]), Buffer.from([0, 255, 10, 61, 32, 0xc3, 0x28, 1, 2, 3]));
        }
      });
    });
  }

  it("GNU tar --format=posix: headers match tar -tv --numeric-owner --full-time", async () => {
    await withTempDir(async (dir) => {
      const src = join(dir, "src");
      const archive = join(dir, "out.tar");
      await run("python3", [PYTAR, "mktree", src, "full"]);
      await run("tar", ["--format=posix", "-cf", archive, "-C", src, "."]);
      const ours = (await ourHeaders(archive)).map(gnuViewOf);
      const listing = await gnuList(archive);
      assert.equal(ours.length, listing.length);
      for (let i = 0; i < ours.length; i++) {
        const a = ours[i]!;
        const b = listing[i]!;
        assert.ok(Math.abs(a.mtime - b.mtime) < 1e-6, `${b.name}: mtime ${a.mtime} vs ${b.mtime}`);
        assert.deepEqual({ ...a, mtime: 0 }, { ...b, mtime: 0 }, b.name);
      }
    });
  });

  it("mmdebstrap essential rootfs: byte-exact re-emit, headers match Python tarfile", async () => {
    const archive = await debianRootfsTar("essential");
    const result = await reemitFile(archive, undefined, true);
    assert.equal(result.sha256, await sha256File(archive));
    assert.equal(result.length, (await stat(archive)).size);
    assert.ok(result.entries > 1000);
    const headers = await ourHeaders(archive);
    assert.ok(headers.some((h) => h.type === "hardlink"));
    assert.ok(headers.some((h) => h.type === "char"));
    assertSameMembers(headers.map(memberOf), await pythonList(archive), "essential rootfs");
  });
});

describe("names that are not valid UTF-8", () => {
  for (const format of ["--format=gnu", "--format=posix"]) {
    it(`GNU tar ${format}: raw name bytes kept, re-emit exact`, async () => {
      await withTempDir(async (dir) => {
        const src = join(dir, "src");
        await run("python3", [
          "-c",
          "import os,sys; d=os.fsencode(sys.argv[1]); os.makedirs(d); open(d+b'/caf\\xe9-'+b'x'*120,'wb').write(b'latin1'); os.symlink(b'caf\\xe9', d+b'/link')",
          src,
        ]);
        const archive = join(dir, "a.tar");
        await run("tar", [format, "-cf", archive, "-C", src, "."]);
        const result = await reemitFile(archive, 777);
        assert.equal(result.sha256, await sha256File(archive));
        const headers = await ourHeaders(archive);
        const file = headers.find((h) => h.nameRaw && h.type === "file");
        assert.ok(file, "no entry kept its raw name");
        assert.ok(file.name.includes("\ufffd"));
        const link = headers.find((h) => h.type === "symlink");
        assert.deepEqual(Buffer.from(link?.linknameRaw ?? []), Buffer.from([0x63, 0x61, 0x66, 0xe9]));
        assertSameMembers(headers.map(memberOf), await pythonList(archive), format);
      });
    });
  }
});

describe("sizes of 8 GiB and more written by GNU tar (header only)", () => {
  for (const format of ["--format=gnu", "--format=posix"]) {
    it(`${format}: size read from a base-256 field or a PAX record`, async () => {
      await withTempDir(async (dir) => {
        const big = join(dir, "big.img");
        await run("truncate", ["-s", String(9 * 1024 ** 3 + 3), big]);
        const head = join(dir, "head.tar");
        // Only the headers are kept: tar stops on SIGPIPE long before reading 9 GiB.
        await run("sh", [
          "-c",
          `tar ${format} -cf - -C ${dir} big.img 2>/dev/null | head -c 4096 > ${head}; true`,
        ]);
        const py = await run("python3", [
          "-c",
          "import sys,tarfile; m=tarfile.open(sys.argv[1],'r|').next(); print(m.size)",
          head,
        ]);
        const reader = readTarFile(head);
        const first = await reader[Symbol.asyncIterator]().next();
        await reader.close();
        assert.equal(first.done, false);
        assert.equal(first.value?.header.size, Number(py.trim()));
        assert.equal(first.value?.header.size, 9 * 1024 ** 3 + 3);
      });
    });
  }
});
