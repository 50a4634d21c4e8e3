import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import { loadZod } from "../../src/oci/shape.js";
import { descriptorShape, imageConfigShape, indexShape, manifestShape } from "../../src/oci/types.js";

const D = sha256("x");
const descriptor = {
  mediaType: MediaType.OciLayerZstd,
  digest: D,
  size: 5,
  annotations: { a: "b" },
  platform: { architecture: "arm64", os: "linux", variant: "v8" },
};
const manifest = {
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: { mediaType: MediaType.OciConfig, digest: D, size: 6 },
  layers: [descriptor, { ...descriptor, urls: ["http://x"] }],
  annotations: { k: "v" },
};
const index = { schemaVersion: 2, manifests: [descriptor] };
const config = {
  architecture: "amd64",
  os: "linux",
  config: { Env: null, Cmd: ["sh"], ExposedPorts: { "80/tcp": {} }, Labels: null },
  rootfs: { type: "layers", diff_ids: [D] },
  history: [{ created_by: "x", empty_layer: true }],
};

/** Every variant of `doc` with one value somewhere replaced by each of `odd`. */
function* mutations(doc: unknown): Generator<unknown> {
  const odd = [undefined, null, "", "x", -1, 1.5, 2 ** 60, 0, true, [], {}, ["x"], { a: 1 }, D, "a/b"];
  if (doc === null || typeof doc !== "object") return;
  const entries = Array.isArray(doc) ? doc.map((v, i) => [i, v] as const) : Object.entries(doc);
  for (const [key, value] of entries) {
    for (const replacement of odd) {
      const copy = (Array.isArray(doc) ? [...doc] : { ...doc }) as Record<string | number, unknown>;
      copy[key] = replacement;
      yield copy;
    }
    for (const inner of mutations(value)) {
      const copy = (Array.isArray(doc) ? [...doc] : { ...doc }) as Record<string | number, unknown>;
      copy[key] = inner;
      yield copy;
    }
  }
}

test("a shape's check never accepts what its zod schema refuses, and accepts the usual documents", () => {
  const z = loadZod();
  let checked = 0;
  let refused = 0;
  for (const [shape, doc] of [
    [descriptorShape, descriptor],
    [manifestShape, manifest],
    [indexShape, index],
    [imageConfigShape, config],
  ] as const) {
    assert.ok(shape.check(doc), "a valid document passes without zod");
    const schema = shape.zod(z);
    for (const variant of mutations(doc)) {
      checked++;
      if (shape.check(variant)) {
        const result = schema.safeParse(variant);
        assert.ok(result.success, `check passed what zod refuses: ${JSON.stringify(variant)}`);
      } else refused++;
    }
  }
  assert.ok(checked > 1000 && refused > 100, `${checked} variants, ${refused} refused`);
});

test("parsing valid documents does not load zod", () => {
  const types = fileURLToPath(new URL("../../src/oci/types.ts", import.meta.url));
  const script = `
    import { createRequire } from "node:module";
    const { parseManifest, parseIndex, parseImageConfig } = await import(${JSON.stringify(types)});
    parseManifest(${JSON.stringify(JSON.stringify(manifest))});
    parseIndex(${JSON.stringify(JSON.stringify(index))});
    parseImageConfig(${JSON.stringify(JSON.stringify(config))});
    const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes("/zod/"));
    const before = loaded();
    try { parseManifest("{}"); } catch {}
    console.log(JSON.stringify({ before, after: loaded() }));
  `;
  const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    encoding: "utf8",
  });
  assert.deepEqual(JSON.parse(out), { before: false, after: true });
});
