/**
 * Outputs the OS refuses (a missing parent directory, a file where a directory
 * should be) are one-line errors with the path and the reason, not internal errors.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { rootstock } from "../helpers/cli.js";
import { smallTarball } from "../helpers/tar.js";
import { withTempDir } from "../helpers/tmp.js";

test("an export or copy to a path the OS refuses is a one-line error naming the path", async () => {
  await withTempDir(async (dir) => {
    const store = join(dir, "store");
    const tarball = await smallTarball(dir);
    const imported = await rootstock(["--store", store, "-q", "import", tarball, "store:small:1"]);
    assert.equal(imported.code, 0, imported.stderr);
    await writeFile(join(dir, "a-file"), "not a directory");

    const cases: Array<[string[], RegExp]> = [
      [
        ["export", "store:small:1", "--format", "tar", "-o", join(dir, "missing", "x.tar")],
        /^rootstock: cannot open \S*\/missing\/x\.tar\.rootstock-partial: no such file or directory$/,
      ],
      [
        ["export", "store:small:1", "--format", "tar", "-o", join(dir, "a-file", "x.tar")],
        /^rootstock: cannot \w+ \S*\/a-file\/x\.tar\S*: not a directory$/,
      ],
      [
        ["copy", "store:small:1", `oci:${join(dir, "a-file", "layout")}:1`],
        /^rootstock: cannot \w+ \S*\/a-file\/layout\S*: not a directory$/,
      ],
    ];
    for (const [args, expected] of cases) {
      const r = await rootstock(["--store", store, "-q", ...args]);
      assert.equal(r.code, 3, `${args.join(" ")}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0] as string, expected);
    }
  });
});
