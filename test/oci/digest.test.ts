import assert from "node:assert/strict";
import { test } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { Digester, EMPTY_SHA256, parseDigest, sha256, verifyDigest } from "../../src/oci/digest.js";

test("sha256 of nothing is the well-known empty digest", () => {
  assert.equal(sha256(new Uint8Array()), EMPTY_SHA256);
});

test("Digester hashes incrementally and counts bytes", () => {
  const d = new Digester();
  d.update(Buffer.from("hello "));
  d.update(Buffer.from("world"));
  assert.equal(d.size, 11);
  assert.equal(d.digest(), sha256("hello world"));
});

test("parseDigest rejects other algorithms and malformed hex, naming the field", () => {
  assert.throws(
    () => parseDigest("sha512:abcd", "layers[0].digest"),
    /layers\[0\]\.digest: unsupported digest algorithm/,
  );
  assert.throws(() => parseDigest("sha256:ABC", "config.digest"), /config\.digest: not a sha256 digest/);
  assert.equal(parseDigest(EMPTY_SHA256), EMPTY_SHA256);
});

test("verifyDigest reports size before digest", () => {
  const err = (() => {
    try {
      verifyDigest({ digest: EMPTY_SHA256, size: 0 }, { digest: sha256("x"), size: 1 }, "blob");
    } catch (e) {
      return e;
    }
  })();
  assert.ok(isRootstockError(err, "SIZE_MISMATCH"));
});
