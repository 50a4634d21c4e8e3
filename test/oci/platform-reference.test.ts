import assert from "node:assert/strict";
import { test } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import {
  matchingManifests,
  normalizePlatform,
  parsePlatform,
  selectManifest,
} from "../../src/oci/platform.js";
import { formatReference, parseReference } from "../../src/oci/reference.js";
import type { ImageIndex } from "../../src/oci/types.js";

test("platform strings parse and normalise like containerd", () => {
  assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
  assert.deepEqual(normalizePlatform(parsePlatform("linux/arm64/v8")), {
    os: "linux",
    architecture: "arm64",
  });
  assert.deepEqual(normalizePlatform(parsePlatform("linux/aarch64")), { os: "linux", architecture: "arm64" });
  assert.deepEqual(normalizePlatform(parsePlatform("linux/x86_64")), { os: "linux", architecture: "amd64" });
  assert.deepEqual(normalizePlatform(parsePlatform("linux/armhf")), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  assert.deepEqual(normalizePlatform(parsePlatform("linux/arm")), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  for (const bad of ["linux", "linux/", "a/b/c/d", "linux/arm 64"]) {
    assert.throws(
      () => parsePlatform(bad),
      (e) => isRootstockError(e, "INVALID_ARGUMENT"),
    );
  }
});

test("an index entry is chosen by normalised platform", () => {
  const entry = (architecture: string, variant?: string) => ({
    mediaType: MediaType.OciManifest,
    digest: sha256(architecture + (variant ?? "")),
    size: 1,
    platform: variant ? { os: "linux", architecture, variant } : { os: "linux", architecture },
  });
  const index: ImageIndex = {
    schemaVersion: 2,
    manifests: [entry("amd64"), entry("arm64", "v8"), entry("arm", "v7"), entry("arm", "v6")],
  };
  assert.equal(selectManifest(index, parsePlatform("linux/arm64")).digest, sha256("arm64v8"));
  assert.equal(selectManifest(index, parsePlatform("linux/aarch64/8")).digest, sha256("arm64v8"));
  assert.equal(selectManifest(index, parsePlatform("linux/x86_64")).digest, sha256("amd64"));
  assert.equal(selectManifest(index, parsePlatform("linux/arm")).digest, sha256("armv7"));
  assert.equal(matchingManifests(index, parsePlatform("linux/arm/v6")).length, 1);
  assert.throws(
    () => selectManifest(index, parsePlatform("linux/riscv64")),
    /no manifest for platform linux\/riscv64; available: linux\/amd64, linux\/arm64\/v8, linux\/arm\/v7, linux\/arm\/v6/,
  );
});

test("references: oci, docker with docker.io normalisation, store", () => {
  assert.deepEqual(parseReference("oci:/tmp/x"), { transport: "oci", path: "/tmp/x" });
  assert.deepEqual(parseReference("oci:./lay:v1.0"), { transport: "oci", path: "./lay", tag: "v1.0" });
  assert.deepEqual(parseReference("docker://debian"), {
    transport: "docker",
    registry: "registry-1.docker.io",
    repository: "library/debian",
    tag: "latest",
  });
  assert.deepEqual(parseReference("docker://docker.io/mesa/ci:abc"), {
    transport: "docker",
    registry: "registry-1.docker.io",
    repository: "mesa/ci",
    tag: "abc",
  });
  assert.deepEqual(parseReference("docker://127.0.0.1:5000/a/b:t"), {
    transport: "docker",
    registry: "127.0.0.1:5000",
    repository: "a/b",
    tag: "t",
  });
  assert.deepEqual(parseReference("docker://localhost/x"), {
    transport: "docker",
    registry: "localhost",
    repository: "x",
    tag: "latest",
  });
  const d = sha256("m");
  assert.deepEqual(parseReference(`docker://registry.gitlab.com/mesa/img@${d}`), {
    transport: "docker",
    registry: "registry.gitlab.com",
    repository: "mesa/img",
    digest: d,
  });
  assert.deepEqual(parseReference("store:debian"), {
    transport: "store",
    repository: "debian",
    tag: "latest",
  });
  assert.deepEqual(parseReference("store:127.0.0.1:5000/ci/x:t1"), {
    transport: "store",
    repository: "127.0.0.1:5000/ci/x",
    tag: "t1",
  });
  for (const ref of [
    "docker://debian",
    "docker://127.0.0.1:5000/a/b:t",
    `docker://quay.io/a@${d}`,
    "oci:/x:y",
    "store:a/b:c",
  ]) {
    assert.deepEqual(parseReference(formatReference(parseReference(ref))), parseReference(ref));
  }
});

test("bad references say what is wrong", () => {
  const cases: Array<[string, RegExp]> = [
    ["debian", /missing transport/],
    ["http://x", /unknown transport "http"/],
    ["docker:debian", /docker references start with docker:\/\//],
    ["docker://Debian", /repository component "Debian" must be lowercase/],
    ["docker://debian:-bad", /tag "-bad" must match/],
    ["docker://debian:t@sha256:00", /give a tag or a digest, not both/],
    ["docker://debian@sha256:00", /not a sha256 digest/],
    ["docker://a..b/x", /bad registry host "a..b"/],
    ["docker://host:99999/x", /bad port/],
    [`store:a:${"x".repeat(129)}`, /tag "x+" must match/],
    ["oci:", /missing layout path/],
    ["oci:/x:bad tag", /not a valid OCI ref name/],
    ["store:a//b", /repository component ""/],
  ];
  for (const [ref, re] of cases) {
    assert.throws(
      () => parseReference(ref),
      (e: unknown) => isRootstockError(e, "INVALID_ARGUMENT") && re.test(e.message),
      ref,
    );
  }
});
