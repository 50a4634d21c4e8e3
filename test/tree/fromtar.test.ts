/**
 * fromTar on archives written by another implementation (Python's tarfile): layer
 * semantics over a base, and clear one-line errors for hostile or broken input.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { sha256 } from "../../src/oci/digest.js";
import { readTarFile } from "../../src/tar/index.js";
import { fromTar, writeLayer } from "../../src/tree/tar.js";
import { run } from "./sample.js";

/** Writes several small tars in one python3 run (the machine is shared: one process). */
const SCRIPT = String.raw`
import io, sys, tarfile
out = sys.argv[1]
def add(t, name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, pax=None):
    i = tarfile.TarInfo(name); i.type = kind; i.mode = mode; i.mtime = 1700000000
    i.linkname = link; i.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax: i.pax_headers = pax
    t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
def tar(name, fmt=tarfile.PAX_FORMAT):
    return tarfile.open(f"{out}/{name}.tar", "w", format=fmt)
with tar("base") as t:
    add(t, "./", tarfile.DIRTYPE, mode=0o755)
    add(t, "./etc/", tarfile.DIRTYPE, mode=0o755)
    add(t, "./etc/passwd", data=b"root:x:0:0\n")
    add(t, "./etc/shadow", data=b"root:*\n", mode=0o640)
    add(t, "./usr/lib/x/", tarfile.DIRTYPE, mode=0o755)
    add(t, "./usr/lib/x/a", data=b"a")
    add(t, "./usr/lib/x/b", data=b"b")
with tar("layer") as t:
    add(t, "etc/.wh.shadow")
    add(t, "usr/lib/x/.wh..wh..opq")
    add(t, "usr/lib/x/c", data=b"c")
    add(t, "etc/passwd-", tarfile.LNKTYPE, link="etc/passwd")
    add(t, "opt/implied/file", data=b"deep")
with tar("escape") as t:
    add(t, "ok", data=b"x")
    add(t, "a/../../escape", data=b"x")
with tar("badlink") as t:
    add(t, "link", tarfile.LNKTYPE, link="missing")
with tar("latin1", tarfile.GNU_FORMAT) as t:
    i = tarfile.TarInfo("caf\udce9"); i.size = 0
    t.addfile(i)
`;

let dir: string;
describe("fromTar", () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "rootstock-tree-fromtar-"));
    await run("python3", ["-c", SCRIPT, dir]);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("applies a layer written by Python's tarfile over a base", async () => {
    const base = await fromTar(readTarFile(join(dir, "base.tar")));
    assert.equal(base.root.mode, 0o755);
    const tree = await fromTar(readTarFile(join(dir, "layer.tar")), { base });
    assert.deepEqual(tree.sortedPaths(), [
      "",
      "etc",
      "etc/passwd",
      "etc/passwd-",
      "opt",
      "opt/implied",
      "opt/implied/file",
      "usr",
      "usr/lib",
      "usr/lib/x",
      "usr/lib/x/c",
    ]);
    assert.equal(tree.get("etc/passwd-"), tree.get("etc/passwd"));
    assert.equal(tree.get("opt/implied/file")!.digest, sha256("deep"));
    assert.ok(base.has("etc/shadow"), "the base tree is not modified");
  });

  it("rejects escaping names, dangling hard links and names that are not UTF-8, naming the entry", async () => {
    await assert.rejects(
      fromTar(readTarFile(join(dir, "escape.tar"))),
      (e) => isRootstockError(e, "UNSAFE_PATH") && e.message.includes("a/../../escape"),
    );
    await assert.rejects(
      fromTar(readTarFile(join(dir, "badlink.tar"))),
      (e) =>
        isRootstockError(e, "TAR_FORMAT") && e.message.includes('"link"') && e.message.includes("missing"),
    );
    await assert.rejects(
      fromTar(readTarFile(join(dir, "latin1.tar"))),
      (e) => isRootstockError(e, "INVALID_FORMAT") && e.message.includes("UTF-8"),
    );
  });

  it("writeLayer refuses a hard link before its target (tar readers could not resolve it)", async () => {
    const node = { ...(await fromTar(readTarFile(join(dir, "base.tar")))).get("etc/passwd")! };
    const layer = writeLayer(
      [
        { kind: "hardlink", path: "a", target: "b" },
        { kind: "node", path: "b", node },
      ],
      () => {
        throw new Error("content must not be read");
      },
    );
    await assert.rejects(
      (async () => {
        for await (const _ of layer);
      })(),
      (e) => isRootstockError(e, "INVALID_ARGUMENT") && e.message.includes('"a"'),
    );
  });
});
