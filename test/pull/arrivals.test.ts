/** Arrivals: the verification of a partial pull waits only for files still being fetched, and never hangs. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sha256 } from "../../src/oci/digest.js";
import { Arrivals } from "../../src/pull/arrivals.js";

const a = sha256("a");
const b = sha256("b");
const had = sha256("already in the store");

const settled = async (p: Promise<void> | undefined) => {
  let state = "pending";
  p?.then(
    () => {
      state = "resolved";
    },
    () => {
      state = "rejected";
    },
  );
  await new Promise((r) => setImmediate(r));
  return state;
};

describe("Arrivals", () => {
  it("has nothing to wait for a file not expected, and resolves a wait when its file arrives", async () => {
    const arrivals = new Arrivals([a, b, a]);
    assert.equal(arrivals.wait(had), undefined);
    const waitA = arrivals.wait(a);
    assert.equal(await settled(waitA), "pending");
    arrivals.arrived(a);
    assert.equal(await settled(waitA), "resolved");
    assert.equal(arrivals.wait(a), undefined, "an arrived file is in the store");
    assert.equal(await settled(arrivals.wait(b)), "pending");
  });

  it("fail rejects every wait with the fetch's error, those open and those to come", async () => {
    const arrivals = new Arrivals([a, b]);
    const waitA = arrivals.wait(a);
    const cause = new Error("range request failed");
    arrivals.fail(cause);
    await assert.rejects(waitA!, (err) => err === cause);
    await assert.rejects(arrivals.wait(b)!, (err) => err === cause);
    await assert.rejects(arrivals.wait(had)!, (err) => err === cause);
  });

  it("finish rejects a wait for a file the fetch never stored instead of hanging", async () => {
    const arrivals = new Arrivals([a, b]);
    arrivals.arrived(a);
    const waitB = arrivals.wait(b);
    arrivals.finish();
    await assert.rejects(waitB!, /was to be fetched but never stored/);
  });

  it("a wait nobody made is no unhandled rejection", async () => {
    const arrivals = new Arrivals([a]);
    arrivals.fail(new Error("nobody waits"));
    arrivals.finish();
    await new Promise((r) => setImmediate(r));
  });
});
