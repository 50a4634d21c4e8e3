import assert from "node:assert/strict";
import { it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import {
  isOpaque,
  isWhiteout,
  makeOpaqueName,
  makeWhiteoutName,
  opaqueDirectory,
  whiteoutTarget,
} from "../../src/tar/index.js";

it("recognises whiteouts and opaque markers", () => {
  assert.equal(isWhiteout("etc/.wh.passwd"), true);
  assert.equal(isWhiteout(".wh.top"), true);
  assert.equal(isWhiteout("./usr/.wh.lib/"), true);
  assert.equal(isWhiteout("etc/passwd"), false);
  assert.equal(isWhiteout("etc/x.wh.y"), false);
  assert.equal(isWhiteout("etc/.wh."), false);
  assert.equal(isWhiteout("etc/.wh..wh..opq"), false);
  assert.equal(isOpaque("etc/.wh..wh..opq"), true);
  assert.equal(isOpaque(".wh..wh..opq"), true);
  assert.equal(isOpaque("etc/.wh.opq"), false);
});

it("maps whiteouts to their targets and back", () => {
  assert.equal(whiteoutTarget("etc/.wh.passwd"), "etc/passwd");
  assert.equal(whiteoutTarget("./a/b/.wh.c"), "./a/b/c");
  assert.equal(whiteoutTarget(".wh.top"), "top");
  assert.equal(whiteoutTarget("etc/passwd"), undefined);
  assert.equal(whiteoutTarget("etc/.wh..wh..opq"), undefined);
  assert.equal(opaqueDirectory("a/b/.wh..wh..opq"), "a/b");
  assert.equal(opaqueDirectory(".wh..wh..opq"), "");
  assert.equal(opaqueDirectory("a/b/c"), undefined);
  for (const path of ["etc/passwd", "top", "a/b/c", "usr/lib/"]) {
    const name = makeWhiteoutName(path);
    assert.equal(isWhiteout(name), true, name);
    assert.equal(whiteoutTarget(name), path.replace(/\/$/, ""));
  }
  assert.equal(makeOpaqueName("a/b/"), "a/b/.wh..wh..opq");
  assert.equal(makeOpaqueName(""), ".wh..wh..opq");
  assert.equal(isOpaque(makeOpaqueName("x")), true);
  assert.throws(
    () => makeWhiteoutName("a/.."),
    (err) => isRootstockError(err, "INVALID_ARGUMENT"),
  );
});
