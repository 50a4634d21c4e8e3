/**
 * A stream that verifies itself (markVerified) is stored without a second hash, and
 * still never lands when its bytes are not the digest: its own check throws first.
 */
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { verifiedFileStream } from "../../src/cas/objectdir.js";
import { ContentStore } from "../../src/cas/store.js";
import { isRootstockError } from "../../src/errors.js";
import { markVerified, sha256, verifiedDigestOf } from "../../src/oci/digest.js";
import { withTempDir } from "../helpers/tmp.js";

test("a self-verified stream is stored under its digest; a lying one is refused and nothing lands", async () => {
  await withTempDir(async (dir) => {
    const store = await ContentStore.open(join(dir, "store"), { durability: "batch" });
    const good = Buffer.from("the content\n".repeat(1000));
    const digest = sha256(good);
    await mkdir(join(dir, "src"));
    await writeFile(join(dir, "src", "good"), good);
    const stream = verifiedFileStream(join(dir, "src", "good"), { digest, size: good.length }, "good");
    assert.equal(verifiedDigestOf(stream), digest, "the reader marks its stream");
    const put = await store.putBlob(stream, { digest, size: good.length });
    assert.deepEqual(put, { digest, size: good.length, existed: false });
    assert.deepEqual(await store.readBlob({ digest }), good);

    // Same size, other bytes, read as if they were `digest`: the stream's own check refuses them.
    const bad = Buffer.from(good);
    bad[5] = (bad[5] ?? 0) ^ 1;
    await writeFile(join(dir, "src", "bad"), bad);
    const other = await ContentStore.open(join(dir, "other"), { durability: "batch" });
    await assert.rejects(
      other.putBlob(verifiedFileStream(join(dir, "src", "bad"), { digest, size: bad.length }, "bad"), {
        digest,
        size: bad.length,
      }),
      (err: unknown) => isRootstockError(err, "DIGEST_MISMATCH"),
    );
    assert.equal(await other.hasBlob(digest), false);
    assert.deepEqual(await readdir(join(dir, "other", "ingest")), []);

    // A mark for another digest than the one expected does not skip the hash.
    const liar = markVerified(
      (async function* () {
        yield bad;
      })(),
      sha256("something else"),
    );
    await assert.rejects(other.putBlob(liar, { digest, size: bad.length }), (err: unknown) =>
      isRootstockError(err, "DIGEST_MISMATCH"),
    );
    assert.equal(await other.hasBlob(digest), false);
  });
});
