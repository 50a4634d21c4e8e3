import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { filesRead, loadGraph } from "../../src/build/graph.js";
import { isRootstockError } from "../../src/errors.js";

const EXAMPLE = "examples/mesa/images.yaml";

/** The error message thrown by loadGraph, or a failure when it does not throw. */
function errorOf(text: string, filename = "images.yaml"): string {
  try {
    loadGraph(text, filename);
  } catch (err) {
    assert.ok(isRootstockError(err, "INVALID_FORMAT"), `expected INVALID_FORMAT, got ${String(err)}`);
    return err.message;
  }
  assert.fail("expected an error");
}

const BASE = `version: 1
images:
  base:
    mmdebstrap: {suite: bookworm}
`;

describe("images.yaml validation", () => {
  it("names file:line:column and the field path of a wrong type", () => {
    const text = `${BASE}  child:
    from: base
    packages: [ok, 12]
`;
    assert.equal(
      errorOf(text),
      "images.yaml:7:20: images.child.packages[1]: expected string, received number",
    );
  });

  it("points at the key of an unknown field", () => {
    const text = `${BASE}  child:
    from: base
    pakages: [vim]
`;
    assert.equal(errorOf(text), 'images.yaml:7:5: images.child.pakages: unknown field "pakages"');
  });

  it("rejects unknown top-level fields and unknown architectures", () => {
    assert.match(errorOf(`${BASE}registry: x\n`), /^images\.yaml:5:1: registry: unknown field "registry"$/);
    const text = `${BASE}    arch: {x86_64: null, arm65: {}}\n`;
    assert.match(
      errorOf(text),
      /^images\.yaml:5:26: images\.base\.arch\.arm65: unknown architecture "arm65" \(x86_64, /,
    );
  });

  it("reports YAML syntax errors and duplicate keys with a position", () => {
    assert.match(errorOf("version: 1\nimages:\n  a: [\n"), /^images\.yaml:\d+:\d+: /);
    assert.match(errorOf(`${BASE}  base: {from: x}\n`), /^images\.yaml:5:3: Map keys must be unique/);
  });

  it("rejects unknown parents, naming the known images", () => {
    const text = `${BASE}  child:
    from: bsae
`;
    assert.equal(errorOf(text), 'images.yaml:6:11: images.child.from: unknown parent "bsae" (images: base)');
  });

  it("names the cycle", () => {
    const text = `version: 1
images:
  a: {from: b}
  b: {from: c}
  c: {from: a}
`;
    assert.equal(errorOf(text), "images.yaml:3:13: images.a.from: cycle: a → b → c → a");
  });

  it("rejects an image with two producers or none", () => {
    assert.match(
      errorOf(`${BASE}  x: {from: base, mmdebstrap: {suite: bookworm}}\n`),
      /either from: or mmdebstrap:/,
    );
    assert.match(errorOf(`${BASE}  x: {packages: [vim]}\n`), /^images\.yaml:5:6: images\.x: expected from:/);
  });

  it("rejects unknown package lists and paths that leave the directory", () => {
    assert.match(
      errorOf(`${BASE}    package-lists: [nope]\n`),
      /^images\.yaml:5:21: images\.base\.package-lists\[0\]: unknown package list "nope"/,
    );
    assert.match(
      errorOf(`${BASE}    scripts: [../x.sh]\n`),
      /images\.base\.scripts\[0\]: \.\.\/x\.sh: path leaves/,
    );
    assert.match(errorOf(`${BASE}    scripts: [/etc/x.sh]\n`), /expected a path relative to images.yaml/);
  });

  it("refuses a child architecture its parent does not build", () => {
    const text = `version: 1
arch: [x86_64]
images:
  base: {mmdebstrap: {suite: bookworm}}
  child: {from: base, arch: [arm64]}
`;
    assert.match(errorOf(text), /images\.child\.arch: architecture arm64 is not built by parent "base"/);
  });

  it("refuses a tag prefix that looks like the pre-merge channel", () => {
    assert.match(
      errorOf(`${BASE}    tag-prefix: pre-x\n`),
      /images\.base\.tag-prefix: must not start with "pre"/,
    );
  });
});

describe("graph resolution", () => {
  it("resolves the Mesa example into one node per image and arch, parents first", async () => {
    const graph = loadGraph(await readFile(EXAMPLE, "utf8"), EXAMPLE);
    assert.deepEqual(graph.order, [
      "test-base@x86_64",
      "test-base@arm64",
      "test-gl@x86_64",
      "test-gl@arm64",
      "test-vk@x86_64",
      "test-vk@arm64",
      "build-base@x86_64",
      "build-base@arm64",
      "build@x86_64",
      "build@arm64",
    ]);
    const gl = graph.images.get("test-gl@arm64")!;
    assert.equal(gl.repository, "debian/arm64_test-gl");
    assert.equal(gl.parent, "test-base@arm64");
    // per-arch adjustment appended, sorted
    assert.deepEqual(gl.script?.packages, ["libdrm-tests", "libgl1-mesa-dri", "mesa-utils", "xvfb"]);
    assert.equal(gl.config.env.GALLIUM_DRIVER, "panfrost");
    assert.equal(gl.config.env.LANG, "C.UTF-8", "environment inherited from the parent");
    assert.deepEqual(gl.export.lava?.remove, ["/usr/share/doc", "/usr/share/man", "/var/cache/apt"]);
    assert.deepEqual(graph.images.get("test-base@x86_64")!.children, ["test-gl@x86_64", "test-vk@x86_64"]);
    const base = graph.images.get("test-base@x86_64")!.base;
    assert.equal(base.kind, "mmdebstrap");
    if (base.kind === "mmdebstrap") {
      assert.equal(base.options.architecture, "amd64");
      assert.ok(base.options.include.includes("libdrm2") && base.options.include.includes("curl"));
    }
    assert.ok(graph.images.get("build@x86_64")!.script!.packages.includes("gcc-multilib"));
    assert.ok(!graph.images.get("build@arm64")!.script!.packages.includes("gcc-multilib"));
    assert.deepEqual(filesRead(graph.images.get("build@x86_64")!), ["files/meson-native.ini"]);
  });

  it("parses external bases: pinned registry references, tarballs, OCI layouts", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    const graph = loadGraph(
      `version: 1
images:
  a: {from: "debian:bookworm-slim@${digest}"}
  b: {from: "docker://registry.example.org/x/y:1"}
  c: {from: "tarball:rootfs/base.tar", packages: [vim]}
  d: {from: "oci:layouts/base:v1"}
`,
      "images.yaml",
    );
    const sources = ["a", "b", "c", "d"].map((n) => {
      const b = graph.images.get(`${n}@x86_64`)!.base;
      return b.kind === "import" ? b.source : undefined;
    });
    assert.deepEqual(sources, [
      { transport: "docker", reference: `debian:bookworm-slim@${digest}`, pinned: true, digest },
      { transport: "docker", reference: "registry.example.org/x/y:1", pinned: false },
      { transport: "tarball", path: "rootfs/base.tar" },
      { transport: "oci", path: "layouts/base", ref: "v1" },
    ]);
    assert.ok(graph.images.get("c@x86_64")!.script, "an import with packages runs the script step");
    assert.equal(graph.images.get("a@x86_64")!.script, undefined);
  });
});
