/**
 * `npm run bench -- pull` (and the pull half of `pull-export`): rootstock pull next
 * to podman 4.3 with partial pulls enabled, both from the same docker-registry on
 * 127.0.0.1, bytes counted in the registry's access log.
 *
 * 1. Full pull of the reference rootfs (zstd:chunked, legacy keys so podman 4.3
 *    pulls it partially too) into empty stores. Goal: at most podman's time, peak
 *    RSS under 300 MB.
 * 2. Ten growing Debian images (essential, then one small package more each time)
 *    pulled in turn into one store each: bytes fetched and wall time per update,
 *    against the changed files' frames + TOC + tar-split (the done-when bound:
 *    1.05x), and the store's size against the unique file content (bound: 1.1x).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { du } from "../../src/cas/du.js";
import { ContentStore } from "../../src/cas/store.js";
import { copyImage } from "../../src/image/copy.js";
import { openEndpoint } from "../../src/image/endpoint.js";
import type { Digest } from "../../src/oci/digest.js";
import { parseReference } from "../../src/oci/reference.js";
import { podmanSandbox } from "../../test/helpers/podman.js";
import { blobBytesSince, startRegistry, type TestRegistry } from "../../test/helpers/registry.js";
import { growingLayout, type LayerFacts, layerFacts, referenceLayout } from "../../test/pull/fixtures.js";
import { formatTable, type Measurement, measure, ourCli } from "../lib.js";

const GROWING = Number(process.env.PULL_BENCH_IMAGES ?? 10);

/** podman 4.3 with the peers.md wrapper, its own storage under `dir`, partial pulls on. */
async function podmanEnv(dir: string, reg: TestRegistry): Promise<{ env: NodeJS.ProcessEnv; cmd: string }> {
  const podman = await podmanSandbox({ dir, partialPulls: true, insecureRegistry: reg.host });
  return { env: podman.env, cmd: podman.command };
}

async function logLength(reg: TestRegistry): Promise<number> {
  return (await reg.accessLog()).length;
}

async function push(reg: TestRegistry, layout: string, tag: string, repo: string): Promise<void> {
  const src = await openEndpoint(parseReference(`oci:${layout}:${tag}`), { storeDir: "/nonexistent" });
  const dst = await openEndpoint(parseReference(`docker://${reg.host}/${repo}:${tag}`), {
    storeDir: "/nonexistent",
  });
  await copyImage(src, dst, tag);
  await dst.close();
}

async function storeBytes(dir: string): Promise<number> {
  const u = await du(await ContentStore.open(dir));
  return u.files.bytes + u.blobs.bytes + u.meta.bytes;
}

export async function run(): Promise<string> {
  const out: string[] = [];
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-pull-"));
  const reg = await startRegistry();
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    // 1. Full pull of the reference rootfs.
    const refLayout = await referenceLayout();
    await push(reg, refLayout, "ref", "reference");
    const image = `${reg.host}/reference:ref`;
    const full: Measurement[] = [];
    for (let round = 0; round < 2; round++) {
      const storeDir = join(work, `full-store-${round}`);
      let from = await logLength(reg);
      const ours = await measure(
        "rootstock pull (empty store)",
        ourCli("--store", storeDir, "-q", "pull", `docker://${image}`),
      );
      full.push({ ...ours, bytes: (await blobBytesSince(reg, from)).bytes, note: `round ${round + 1}` });
      const pdir = join(work, `podman-full-${round}`);
      const { env, cmd } = await podmanEnv(pdir, reg);
      from = await logLength(reg);
      const theirs = await measure("podman pull (partial pulls on)", `${cmd} pull -q ${image}`, { env });
      full.push({ ...theirs, bytes: (await blobBytesSince(reg, from)).bytes, note: `round ${round + 1}` });
      // Nothing is deleted until the end: ext4 skips recently freed inodes when it
      // allocates, so a big rm just before a pull slows the pull that follows.
      cleanups.push(() =>
        measure("cleanup", `${cmd} rmi -a -f >/dev/null 2>&1`, { env }).catch(() => undefined),
      );
    }
    out.push(
      formatTable("pull: reference rootfs, zstd:chunked, empty store (bytes = registry blob bytes)", full),
    );

    // 2. Ten growing images, pulled in turn.
    if (GROWING < 1) return out.join("\n");
    const growing = await growingLayout(GROWING, { legacyAnnotations: true });
    const facts: LayerFacts[] = [];
    for (let i = 0; i < GROWING; i++) {
      await push(reg, growing, `g${i}`, "growing");
      facts.push(await layerFacts(growing, `g${i}`));
    }
    const storeDir = join(work, "growing-store");
    const { env, cmd } = await podmanEnv(join(work, "podman-growing"), reg);
    const rows: Measurement[] = [];
    const seen = new Map<Digest, number>();
    let worst = 0;
    for (let i = 0; i < GROWING; i++) {
      const f = facts[i]!;
      let expected = f.metadataBytes;
      for (const [d, [size, compressed]] of f.files) {
        if (!seen.has(d)) expected += compressed;
        seen.set(d, size);
      }
      const ref = `${reg.host}/growing:g${i}`;
      let from = await logLength(reg);
      const ours = await measure(
        `rootstock g${i}`,
        ourCli("--store", storeDir, "-q", "pull", `docker://${ref}`),
      );
      const ourBytes = (await blobBytesSince(reg, from, f.digest)).bytes;
      if (i > 0) worst = Math.max(worst, ourBytes / expected);
      rows.push({
        ...ours,
        bytes: ourBytes,
        note: i === 0 ? "first" : `${(ourBytes / expected).toFixed(3)}x changed+meta (${expected})`,
      });
      from = await logLength(reg);
      const theirs = await measure(`podman g${i}`, `${cmd} pull -q ${ref}`, { env });
      rows.push({ ...theirs, bytes: (await blobBytesSince(reg, from, f.digest)).bytes });
    }
    const unique = [...seen.values()].reduce((a, b) => a + b, 0);
    const stored = await storeBytes(storeDir);
    out.push(
      formatTable(
        `pull: ${GROWING} growing Debian images in turn (bytes = layer blob bytes from the registry log)`,
        rows,
      ) +
        `\n\nworst update: ${worst.toFixed(3)}x (changed files' frames + TOC + tar-split; bound 1.05x)` +
        `\nstore: ${stored.toLocaleString("en-US")} bytes for ${unique.toLocaleString("en-US")} bytes of unique file content: ${(stored / unique).toFixed(3)}x (bound 1.1x)`,
    );
    await measure("cleanup", `${cmd} rmi -a -f >/dev/null 2>&1`, { env }).catch(() => undefined);
  } finally {
    for (const cleanup of cleanups) await cleanup();
    await reg.stop();
    await rm(work, { recursive: true, force: true });
  }
  return out.join("\n");
}
