import assert from "node:assert/strict";
import { test } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { canonicalJson, descriptorFor, serialiseManifest } from "../../src/oci/canonical.js";
import { sha256 } from "../../src/oci/digest.js";
import { isLayerMediaType, layerCompression, MediaType } from "../../src/oci/mediatypes.js";
import {
  checkDiffIds,
  type ImageManifest,
  parseImageConfig,
  parseImageDocument,
  parseIndex,
  parseManifest,
} from "../../src/oci/types.js";

const D1 = sha256("config");
const D2 = sha256("layer");

function manifest(layers: unknown[] = [{ mediaType: MediaType.OciLayerGzip, digest: D2, size: 5 }]) {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: D1, size: 6 },
    layers,
  };
}

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isRootstockError(err, "INVALID_FORMAT"), `expected INVALID_FORMAT, got ${err}`);
    return err.message;
  }
  assert.fail("expected an error");
}

test("layer media types say their compression", () => {
  assert.equal(layerCompression(MediaType.OciLayer), "none");
  assert.equal(layerCompression(MediaType.OciLayerGzip), "gzip");
  assert.equal(layerCompression(MediaType.OciLayerZstd), "zstd");
  assert.equal(layerCompression(MediaType.DockerLayerGzip), "gzip");
  assert.equal(layerCompression(MediaType.OciLayerNondistributableZstd), "zstd");
  assert.equal(layerCompression(MediaType.OciConfig), undefined);
  assert.equal(isLayerMediaType(MediaType.OciManifest), false);
});

test("a valid manifest parses and keeps unknown fields", () => {
  const doc = { ...manifest(), extra: { kept: true } };
  const parsed = parseManifest(JSON.stringify(doc));
  assert.equal(parsed.layers[0]?.digest, D2);
  assert.deepEqual((parsed as Record<string, unknown>).extra, { kept: true });
});

test("manifest errors name the field path", () => {
  const bad = manifest([
    { mediaType: MediaType.OciLayerGzip, digest: D2, size: 5 },
    { mediaType: MediaType.OciLayerGzip, digest: D2, size: 5 },
    { mediaType: MediaType.OciLayerGzip, digest: "sha256:XYZ", size: 5 },
  ]);
  assert.equal(
    message(() => parseManifest(JSON.stringify(bad))),
    'manifest: layers[2].digest: not a sha256 digest: "sha256:XYZ"',
  );
  assert.match(
    message(() => parseManifest(JSON.stringify({ ...manifest(), schemaVersion: 1 }))),
    /^manifest: schemaVersion: must be 2/,
  );
  const noSize = manifest([{ mediaType: MediaType.OciLayerGzip, digest: D2 }]);
  assert.equal(
    message(() => parseManifest(JSON.stringify(noSize))),
    "manifest: layers[0].size: required field is missing",
  );
  const negative = manifest([{ mediaType: MediaType.OciLayerGzip, digest: D2, size: -1 }]);
  assert.match(
    message(() => parseManifest(JSON.stringify(negative))),
    /^manifest: layers\[0\]\.size: /,
  );
  assert.match(
    message(() => parseManifest("{not json")),
    /^manifest: not valid JSON/,
  );
  const md5 = manifest([{ mediaType: MediaType.OciLayerGzip, digest: "md5:abcd", size: 1 }]);
  assert.match(
    message(() => parseManifest(JSON.stringify(md5))),
    /layers\[0\]\.digest: unsupported digest algorithm/,
  );
  const anno = { ...manifest(), annotations: { "a.b": 3 } };
  assert.match(
    message(() => parseManifest(JSON.stringify(anno))),
    /^manifest: annotations\["a\.b"\]: /,
  );
});

test("an index is not a manifest and vice versa", () => {
  const index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
  assert.match(
    message(() => parseManifest(JSON.stringify(index))),
    /manifest: config: required field is missing/,
  );
  assert.match(
    message(() => parseIndex(JSON.stringify({ ...index, mediaType: MediaType.OciManifest }))),
    /is not an index media type/,
  );
  assert.equal(parseImageDocument(JSON.stringify(index)).kind, "index");
  assert.equal(parseImageDocument(JSON.stringify(manifest())).kind, "manifest");
  const dockerList = { schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [] };
  assert.equal(parseImageDocument(JSON.stringify(dockerList)).kind, "index");
  assert.match(
    message(() => parseImageDocument("{}")),
    /neither an image manifest nor an index/,
  );
});

test("image config: Docker nulls are accepted, diff_ids are checked against layers", () => {
  const config = {
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/bin"], Cmd: null, Entrypoint: null, Labels: null, WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: [sha256("tar")] },
    history: [{ created_by: "x", empty_layer: false }],
  };
  const parsed = parseImageConfig(JSON.stringify(config));
  const m = parseManifest(JSON.stringify(manifest())) as ImageManifest;
  checkDiffIds(m, parsed);
  const two = { ...config, rootfs: { type: "layers", diff_ids: [sha256("a"), sha256("b")] } };
  assert.throws(
    () => checkDiffIds(m, parseImageConfig(JSON.stringify(two))),
    /diff_ids has 2 entries but the manifest has 1 layers/,
  );
  assert.match(
    message(() => parseImageConfig(JSON.stringify({ ...config, rootfs: { type: "x", diff_ids: [] } }))),
    /^config: rootfs\.type: must be "layers"/,
  );
  assert.match(
    message(() =>
      parseImageConfig(JSON.stringify({ ...config, rootfs: { type: "layers", diff_ids: ["nope"] } })),
    ),
    /^config: rootfs\.diff_ids\[0\]: not a sha256 digest/,
  );
});

test("canonical JSON keeps key order, has no whitespace, and descriptors name its bytes", () => {
  const bytes = canonicalJson({ b: 1, a: [1, 2], c: undefined, d: "é" });
  assert.equal(Buffer.from(bytes).toString("utf8"), '{"b":1,"a":[1,2],"d":"é"}');
  const desc = descriptorFor(MediaType.OciConfig, bytes, { annotations: { x: "y" } });
  assert.equal(desc.digest, sha256(bytes));
  assert.equal(desc.size, bytes.length);
  const s = serialiseManifest(parseManifest(JSON.stringify(manifest())));
  assert.equal(s.descriptor.mediaType, MediaType.OciManifest);
  assert.deepEqual(JSON.parse(Buffer.from(s.bytes).toString()), manifest());
  assert.throws(() => canonicalJson({ n: Number.NaN }), /non-finite/);
});
