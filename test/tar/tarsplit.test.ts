/**
 * Raw accounting against tar-split itself: `tar-split disasm` cuts an archive into one
 * Segment (padding + header blocks) and one File per entry, then the end. Our reader's
 * headerBytes, names, sizes and trailer must match it exactly (compress builds its
 * tar-split and zstd:chunked frames from them).
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { readTarFile } from "../../src/tar/index.js";
import { debianRootfsTar, hasCommand } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";
import { PYTAR, run } from "./helpers.js";

interface TarSplitLine {
  type: 1 | 2;
  name?: string;
  name_raw?: string;
  size?: number;
  payload: string | null;
}

async function assertMatchesTarSplit(archive: string, dir: string): Promise<number> {
  const json = join(dir, "split.json.gz");
  await run("tar-split", ["disasm", "--no-stdout", "--output", json, archive]);
  const lines = gunzipSync(await readFile(json))
    .toString("utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as TarSplitLine);
  let i = 0;
  const reader = readTarFile(archive);
  let entries = 0;
  for await (const entry of reader) {
    const segment = lines[i++]!;
    const file = lines[i++]!;
    const where = `entry ${entries} ${entry.header.name}`;
    assert.equal(segment.type, 2, where);
    assert.ok(
      Buffer.from(segment.payload ?? "", "base64").equals(Buffer.from(entry.headerBytes)),
      `${where}: segment`,
    );
    assert.equal(file.type, 1, where);
    const name = file.name_raw ? Buffer.from(file.name_raw, "base64") : Buffer.from(file.name ?? "");
    assert.ok(
      name.equals(Buffer.from(entry.header.nameRaw ?? new TextEncoder().encode(entry.header.name))),
      where,
    );
    assert.equal(file.size ?? 0, entry.header.declaredSize ?? entry.header.size, `${where}: size`);
    entries++;
  }
  const trailer = reader.trailer;
  const end = lines[i++]!;
  assert.equal(end.type, 2);
  assert.ok(Buffer.from(end.payload ?? "", "base64").equals(Buffer.from(trailer.endBlocks)), "end segment");
  const rest: Buffer[] = [];
  for await (const c of trailer.rest) rest.push(Buffer.from(c));
  const theirRest = lines.slice(i).map((l) => Buffer.from(l.payload ?? "", "base64"));
  assert.ok(Buffer.concat(rest).equals(Buffer.concat(theirRest)), "trailing bytes");
  return entries;
}

describe("raw accounting matches tar-split", () => {
  it("GNU tar gnu and posix archives with long names, links, devices and xattrs", async (t) => {
    if (!(await hasCommand("tar-split"))) return t.skip("tar-split not installed");
    await withTempDir(async (dir) => {
      const src = join(dir, "src");
      await run("python3", [PYTAR, "mktree", src, "full"]);
      for (const format of ["--format=gnu", "--format=posix"]) {
        const archive = join(dir, "a.tar");
        await run("tar", [format, "--xattrs", "--xattrs-include=*", "-cf", archive, "-C", src, "."]);
        assert.ok((await assertMatchesTarSplit(archive, dir)) > 10);
      }
    });
  });

  it("the mmdebstrap essential rootfs", async (t) => {
    if (!(await hasCommand("tar-split"))) return t.skip("tar-split not installed");
    const archive = await debianRootfsTar("essential");
    await withTempDir(async (dir) => {
      assert.ok((await assertMatchesTarSplit(archive, dir)) > 1000);
    });
  });
});
