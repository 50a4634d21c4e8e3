/**
 * Crash safety and cross-process locking with real processes: a writer is
 * SIGKILLed at random moments; afterwards fsck must find no problem (ingest
 * leftovers of the dead writer are reported as harmless), gc must sweep them, and a
 * rerun of the writer must complete.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { fsck } from "../../src/cas/fsck.js";
import { gc } from "../../src/cas/gc.js";
import { ContentStore } from "../../src/cas/store.js";
import { isRootstockError } from "../../src/errors.js";
import { withTempDir } from "../helpers/tmp.js";

const WRITER = fileURLToPath(new URL("./crash-writer.ts", import.meta.url));

function startWriter(
  root: string,
  iterations: number,
  seed: number,
  holdMs = 0,
): { child: ChildProcess; ready: Promise<void>; firstRef: Promise<void> } {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", WRITER, root, String(iterations), String(seed), String(holdMs)],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  const early = new Promise<never>((_, reject) =>
    child.on("exit", (code, signal) =>
      reject(new Error(`writer exited early (${code ?? signal}): ${stderr}`)),
    ),
  );
  early.catch(() => {});
  const line = (word: string) =>
    Promise.race([
      new Promise<void>((resolve) => {
        let out = "";
        child.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes(word)) resolve();
        });
      }),
      early,
    ]);
  const ready = line("ready");
  const firstRef = line("ref");
  // Either may never be awaited (a killed writer): keep their rejections handled.
  ready.catch(() => {});
  firstRef.catch(() => {});
  return { child, ready, firstRef };
}

async function exitCode(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = (await once(child, "exit")) as [number | null];
  return code;
}

test("SIGKILL at random moments leaves a store that fsck finds clean and gc tidies", async (t) => {
  await withTempDir(async (root) => {
    // Early rounds kill soon after start (mid first image); later ones after the
    // writer has tagged an image, so the store surely holds images by the end.
    const delays = [30, 120, 260, 40, 200];
    for (const [round, delay] of delays.entries()) {
      const { child, ready, firstRef } = startWriter(root, 0, round + 1);
      await ready;
      if (round >= 3) await firstRef;
      await new Promise((r) => setTimeout(r, delay + Math.floor(Math.random() * 50)));
      child.kill("SIGKILL");
      await once(child, "exit");

      const store = await ContentStore.open(root);
      const report = await fsck(store);
      assert.deepEqual(report.problems, [], `round ${round} (kill after ${delay} ms)`);
      for (const leftover of report.leftovers) assert.match(leftover, /\/ingest\/\d+-\d+-[0-9a-f]+$/);
      t.diagnostic(
        `round ${round}: ${report.checked.blobs} blobs, ${report.leftovers.length} ingest leftovers`,
      );
      const swept = await gc(store);
      assert.equal(swept.ingest.count, report.leftovers.length);
      const after = await fsck(store);
      assert.deepEqual([after.problems, after.leftovers], [[], []]);
    }
    const store = await ContentStore.open(root);
    const refs = await store.listRefs();
    assert.ok(refs.length > 0, "the writers got some images in");
    // A retry on the same store completes.
    const { child, ready } = startWriter(root, 3, 99);
    await ready;
    assert.equal(await exitCode(child), 0);
    assert.equal((await fsck(store)).clean, true);
  });
});

test("gc waits for a writer's lease; a live lease blocks gc until its timeout", async () => {
  await withTempDir(async (root) => {
    // The writer holds its lease 1.5 s after writing each image.
    const { child, ready } = startWriter(root, 1, 5, 1500);
    await ready;
    const store = await ContentStore.open(root, { lock: { timeoutMs: 200 } });
    // Wait until the writer's lease exists.
    for (let i = 0; i < 200 && !(await hasLease(root)); i++) await new Promise((r) => setTimeout(r, 10));
    await assert.rejects(
      gc(store),
      (e: unknown) => isRootstockError(e, "LOCKED") && /shared lease/.test(e.message),
    );
    const patient = await ContentStore.open(root, { lock: { timeoutMs: 20_000 } });
    const report = await gc(patient);
    assert.equal(await exitCode(child), 0);
    assert.equal(report.kept.blobs, 3, "the writer's image was referenced before gc could run");
    assert.equal((await fsck(patient)).clean, true);
  });
});

test("a lease or exclusive lock left by a killed process is broken", async () => {
  await withTempDir(async (root) => {
    const { child, ready } = startWriter(root, 1, 7, 60_000);
    await ready;
    // Kill it while it holds its lease, after it referenced its image.
    const probe = await ContentStore.open(root);
    for (let i = 0; i < 1000 && (await probe.listRefs()).length === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(await hasLease(root), true);
    child.kill("SIGKILL");
    await once(child, "exit");
    const store = await ContentStore.open(root, { lock: { timeoutMs: 2000 } });
    const { writeFile } = await import("node:fs/promises");
    // An exclusive lock "held" by the dead writer (as if it died inside gc).
    await writeFile(`${root}/locks/exclusive`, `${child.pid}-1`);
    await store.putBlob(Buffer.from("after the crash"));
    const report = await gc(store);
    assert.equal(report.kept.blobs, 3);
    assert.equal(await hasLease(root), false);
  });
});

async function hasLease(root: string): Promise<boolean> {
  const { readdir } = await import("node:fs/promises");
  return (await readdir(`${root}/locks/shared`).catch(() => [])).length > 0;
}
