import assert from "node:assert/strict";
import { cp, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type Graph, loadGraph } from "../../src/build/graph.js";
import { hashInputFiles } from "../../src/build/inputs.js";
import { type DestinationState, type Plan, plan, planToJson } from "../../src/build/plan.js";
import {
  channelTag,
  computeTags,
  formatInputRecord,
  parseChannelTag,
  parseInputRecord,
  TAG_HASH_CHARS,
} from "../../src/build/tags.js";
import { isRootstockError } from "../../src/errors.js";
import { withTempDir } from "../helpers/tmp.js";

/** A copy of examples/mesa in `dir`, so tests can edit it. */
async function copyExample(dir: string): Promise<string> {
  await cp("examples/mesa", dir, { recursive: true });
  return join(dir, "images.yaml");
}

async function planFile(
  file: string,
  destination: DestinationState,
  channel: "pre-merge" | "post-merge" = "pre-merge",
) {
  const graph = loadGraph(await readFile(file, "utf8"), file);
  return { graph, plan: plan(graph, await hashInputFiles(graph), destination, { channel }) };
}

/** The destination after every image of `p` was built and pushed in `channel` (records as labels). */
function destinationAfter(p: Plan, channel: "pre-merge" | "post-merge" = "post-merge"): DestinationState {
  const state: DestinationState = { tags: {}, lastBuild: {} };
  for (const image of p.images) {
    state.tags[image.repository] = [channelTag(image.tag, channel)];
    // round-trip through the label text, as a real destination would
    state.lastBuild[image.repository] = parseInputRecord(formatInputRecord(image.record));
  }
  return state;
}

const EMPTY: DestinationState = { tags: {}, lastBuild: {} };

function summary(p: Plan): Record<string, string> {
  return Object.fromEntries(
    p.images.map((i) => [i.id, i.action === "build" ? `build: ${i.reasons.join("; ")}` : i.action]),
  );
}

describe("plan", () => {
  it("builds everything into an empty destination, then nothing on a re-plan", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(dir);
      const first = (await planFile(file, EMPTY)).plan;
      assert.equal(first.images.length, 10);
      for (const image of first.images) {
        assert.equal(image.action, "build");
        assert.deepEqual(image.reasons, ["no earlier build recorded at the destination"]);
        assert.equal(image.targetTag, `pre-${image.tag}`);
        assert.ok(image.targetTag.length <= 128);
      }
      assert.equal(new Set(first.images.map((i) => i.tag)).size, 10, "every image and arch has its own tag");
      const again = (await planFile(file, destinationAfter(first))).plan;
      assert.deepEqual(
        again.images.map((i) => [i.tag, i.action, i.exists]),
        first.images.map((i) => [i.tag, "keep", true]),
      );
    });
  });

  it("after editing a shared package list, rebuilds exactly its users and their children, naming the list", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(dir);
      const before = (await planFile(file, EMPTY)).plan;
      const text = await readFile(file, "utf8");
      // mesa-runtime-deps is used by test-base only; test-gl and test-vk inherit it.
      await writeFile(
        file,
        text.replace("    - libxshmfence1\n", "    - libxshmfence1\n    - libxxf86vm1\n"),
      );
      const after = (await planFile(file, destinationAfter(before))).plan;
      assert.deepEqual(summary(after), {
        "test-base@x86_64": 'build: package list "mesa-runtime-deps" changed',
        "test-base@arm64": 'build: package list "mesa-runtime-deps" changed',
        "test-gl@x86_64": "build: parent test-base changed",
        "test-gl@arm64": "build: parent test-base changed",
        "test-vk@x86_64": "build: parent test-base changed",
        "test-vk@arm64": "build: parent test-base changed",
        "build-base@x86_64": "keep",
        "build-base@arm64": "keep",
        "build@x86_64": "keep",
        "build@arm64": "keep",
      });
    });
  });

  it("a list shared by two subgraphs rebuilds both; reordering a list rebuilds nothing", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(dir);
      const before = (await planFile(file, EMPTY)).plan;
      const text = await readFile(file, "utf8");
      await writeFile(
        file,
        text.replace("    - ca-certificates\n    - curl\n", "    - curl\n    - ca-certificates\n"),
      );
      assert.ok(
        (await planFile(file, destinationAfter(before))).plan.images.every((i) => i.action === "keep"),
      );
      await writeFile(file, text.replace("    - zstd\n", "    - zstd\n    - xz-utils\n"));
      const after = summary((await planFile(file, destinationAfter(before))).plan);
      assert.equal(after["test-base@arm64"], 'build: package list "base-runtime" changed');
      assert.equal(after["build-base@x86_64"], 'build: package list "base-runtime" changed');
      assert.equal(after["build@arm64"], "build: parent build-base changed");
      assert.equal(after["test-vk@x86_64"], "build: parent test-base changed");
    });
  });

  it("names an edited script, a per-arch adjustment and an edited copied file", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(dir);
      const before = (await planFile(file, EMPTY)).plan;
      await writeFile(join(dir, "scripts/setup-gl.sh"), "#!/bin/sh\necho changed\n");
      await writeFile(join(dir, "files/meson-native.ini"), "[binaries]\n");
      const text = await readFile(file, "utf8");
      await writeFile(file, text.replace("GALLIUM_DRIVER: panfrost", "GALLIUM_DRIVER: lima"));
      const after = summary((await planFile(file, destinationAfter(before))).plan);
      assert.equal(after["test-gl@x86_64"], "build: file scripts/setup-gl.sh changed");
      assert.equal(after["test-gl@arm64"], "build: field env changed; file scripts/setup-gl.sh changed");
      assert.equal(after["build@x86_64"], "build: file files/meson-native.ini changed");
      assert.equal(after["test-vk@arm64"], "keep");
      assert.equal(after["test-base@x86_64"], "keep");
    });
  });

  it("promotes a pre-merge image on the default branch instead of rebuilding it", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(dir);
      const first = (await planFile(file, EMPTY)).plan;
      const pre = destinationAfter(first, "pre-merge");
      const onMain = (await planFile(file, pre, "post-merge")).plan;
      assert.ok(onMain.images.every((i) => i.action === "promote" && !i.exists && i.targetTag === i.tag));
      const inMr = (await planFile(file, pre, "pre-merge")).plan;
      assert.ok(inMr.images.every((i) => i.action === "keep"));
    });
  });

  it("says when a tag is gone though nothing changed, and when the layer format changed", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(dir);
      const first = (await planFile(file, EMPTY)).plan;
      const state = destinationAfter(first);
      state.tags["debian/x86_64_test-vk"] = [];
      const record = state.lastBuild["debian/arm64_build"]!;
      state.lastBuild["debian/arm64_build"] = {
        ...record,
        inputs: { ...record.inputs, "layer-format": "0" },
      };
      state.tags["debian/arm64_build"] = [];
      const p = summary((await planFile(file, state)).plan);
      assert.equal(p["test-vk@x86_64"], "build: tag missing at the destination although no input changed");
      assert.equal(p["build@arm64"], "build: rootstock layer format changed (0 → 1)");
    });
  });

  it("refuses input files that resolve outside the directory of images.yaml", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(join(dir, "project"));
      await symlink("/etc/hostname", join(dir, "project/scripts/escape.sh"));
      const text = await readFile(file, "utf8");
      await writeFile(file, text.replace("scripts: [scripts/setup-gl.sh]", "scripts: [scripts/escape.sh]"));
      const graph = loadGraph(await readFile(file, "utf8"), file);
      await assert.rejects(hashInputFiles(graph), (err) => {
        assert.ok(isRootstockError(err, "UNSAFE_PATH"));
        assert.match(
          err.message,
          /images\.yaml:\d+:\d+: images\.test-gl\.scripts: scripts\/escape\.sh resolves outside/,
        );
        return true;
      });
      await writeFile(file, text.replace("scripts: [scripts/setup-gl.sh]", "scripts: [scripts/missing.sh]"));
      const graph2 = loadGraph(await readFile(file, "utf8"), file);
      await assert.rejects(hashInputFiles(graph2), /NOT_FOUND|does not exist/);
    });
  });

  it("emits JSON with tags, existence and reasons", async () => {
    await withTempDir(async (dir) => {
      const file = await copyExample(dir);
      const p = (await planFile(file, EMPTY)).plan;
      const json = JSON.parse(planToJson(p));
      assert.equal(json.images[2].id, "test-gl@x86_64");
      assert.equal(json.images[2].parent, "test-base@x86_64");
      assert.equal(json.images[2].exists, false);
      assert.match(json.images[2].tag, /^gl-[a-z2-7]{26}$/);
    });
  });
});

describe("tags", () => {
  const graphOf = (text: string): Graph => loadGraph(text, "images.yaml");
  const files = new Map();

  it("fit the tag grammar and 128 characters even with the longest prefix", () => {
    const prefix = "p".repeat(60);
    const tags = computeTags(
      graphOf(`version: 1\nimages:\n  a: {mmdebstrap: {suite: bookworm}, tag-prefix: ${prefix}}\n`),
      files,
    );
    const tag = tags.get("a@x86_64")!.tag;
    assert.equal(tag.length, 60 + 1 + TAG_HASH_CHARS);
    assert.ok(channelTag(tag, "pre-merge").length <= 128);
    assert.deepEqual(parseChannelTag(channelTag(tag, "pre-merge")), { channel: "pre-merge", tag, prefix });
  });

  it("recognise rootstock's channel tags and nothing else", () => {
    const hash = "a".repeat(TAG_HASH_CHARS);
    assert.deepEqual(parseChannelTag(`pre-${hash}`), { channel: "pre-merge", tag: hash });
    assert.deepEqual(parseChannelTag(`gl-${hash}`), {
      channel: "post-merge",
      tag: `gl-${hash}`,
      prefix: "gl",
    });
    assert.equal(parseChannelTag("latest"), undefined);
    assert.equal(parseChannelTag("20251105-piglit-53"), undefined);
    assert.equal(parseChannelTag(`pre-${"a".repeat(TAG_HASH_CHARS - 1)}`), undefined);
  });

  it("change with any definition field and with the parent, not with key order", () => {
    const tagOf = (text: string, id = "b@x86_64") => computeTags(graphOf(text), files).get(id)!.tag;
    const base = `version: 1
images:
  a: {mmdebstrap: {suite: bookworm, variant: apt}}
  b: {from: a, packages: [vim, less], env: {A: "1", B: "2"}}
`;
    const t = tagOf(base);
    assert.equal(tagOf(base.replace("[vim, less]", "[less, vim, vim]")), t);
    assert.equal(tagOf(base.replace('{A: "1", B: "2"}', '{B: "2", A: "1"}')), t);
    assert.notEqual(tagOf(base.replace('A: "1"', 'A: "2"')), t);
    assert.notEqual(tagOf(base.replace("variant: apt", "variant: minbase")), t);
    assert.equal(tagOf(base.replace("variant: apt", "variant: minbase"), "a@x86_64").length, TAG_HASH_CHARS);
    assert.notEqual(tagOf(base.replace("b: {from: a,", "b: {from: a, cmd: [sh],")), t);
  });
});
