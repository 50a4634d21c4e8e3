/**
 * Child process of the crash-safety and locking tests: writes images into a store
 * as fast as it can (blobs, file objects, metadata, refs), each image under one
 * lease. argv: STORE_ROOT ITERATIONS(0 = until killed) SEED [HOLD_MS]
 * Prints "ready" once the store is open, "ref" after each image it tags and
 * "done" when it finishes.
 */
import { ContentStore } from "../../src/cas/store.js";
import { canonicalJson, descriptorFor } from "../../src/oci/canonical.js";
import type { Digest } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";

const [root, iterationsArg, seedArg, holdArg] = process.argv.slice(2);
const iterations = Number(iterationsArg ?? 0);
let seed = Number(seedArg ?? 1);
const holdMs = Number(holdArg ?? 0);

function random(): number {
  // xorshift: reproducible sizes per seed.
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}

function payload(size: number, tag: string): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) b.write(`${tag}:${i}:${random()}`, i);
  return b;
}

const store = await ContentStore.open(root!);
process.stdout.write("ready\n");
for (let i = 0; iterations === 0 || i < iterations; i++) {
  await store.withLease(async () => {
    const files: Digest[] = [];
    for (let f = 0; f < 4; f++) {
      files.push((await store.putFile(payload(Math.floor(random() * 64 * 1024), `file-${i}-${f}`))).digest);
    }
    const layer = payload(Math.floor(random() * 512 * 1024), `layer-${i}`);
    const layerDesc = descriptorFor(MediaType.OciLayerGzip, layer);
    // Stream the layer in pieces so a kill can land mid-ingest.
    async function* pieces() {
      for (let o = 0; o < layer.length; o += 16 * 1024) yield layer.subarray(o, o + 16 * 1024);
    }
    await store.putBlob(pieces(), layerDesc);
    const config = canonicalJson({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [descriptorFor("x/y", payload(8, `diff-${i}`)).digest] },
    });
    const configDesc = descriptorFor(MediaType.OciConfig, config);
    await store.putBlob(config, configDesc);
    await store.putMeta(layerDesc.digest, { files, data: { iteration: i } });
    const manifest = canonicalJson({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: [layerDesc],
    });
    const manifestDesc = descriptorFor(MediaType.OciManifest, manifest);
    await store.putBlob(manifest, manifestDesc);
    await store.setRef("crash/test", `t${i % 7}`, manifestDesc);
    process.stdout.write("ref\n");
    if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
  });
}
process.stdout.write("done\n");
