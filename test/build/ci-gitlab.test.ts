import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { parse } from "yaml";
import { generateGitlabCi } from "../../src/build/ci-gitlab.js";
import { loadGraph } from "../../src/build/graph.js";
import { hashInputFiles } from "../../src/build/inputs.js";
import { type DestinationState, plan } from "../../src/build/plan.js";
import { channelTag } from "../../src/build/tags.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);
const GITLAB_CI_LOCAL = join(process.cwd(), "node_modules/.bin/gitlab-ci-local");
const EXAMPLE = "examples/mesa/images.yaml";

async function examplePlan(destination: DestinationState, channel: "pre-merge" | "post-merge") {
  const graph = loadGraph(await readFile(EXAMPLE, "utf8"), EXAMPLE);
  return { graph, plan: plan(graph, await hashInputFiles(graph), destination, { channel }) };
}

/** `gitlab-ci-local --list` in a fresh git checkout on the default branch: validates against GitLab's schema. */
async function listJobs(
  dir: string,
  pipeline: string,
): Promise<Map<string, { stage: string; needs: string }>> {
  await writeFile(join(dir, ".gitlab-ci.yml"), pipeline);
  const git = (...args: string[]) =>
    run("git", ["-c", "user.email=ci@example.org", "-c", "user.name=ci", ...args], { cwd: dir });
  await git("init", "-q", "-b", "main");
  await git("add", ".gitlab-ci.yml");
  await git("commit", "-q", "-m", "pipeline");
  const { stdout } = await run(GITLAB_CI_LOCAL, ["--list"], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1" },
  });
  const jobs = new Map<string, { stage: string; needs: string }>();
  const lines = stdout.split("\n");
  const header = lines.findIndex((l) => l.startsWith("name"));
  assert.ok(header >= 0, `no job list in:\n${stdout}`);
  for (const line of lines.slice(header + 1)) {
    const cells = line.trim().split(/\s{2,}/);
    if (cells.length < 4) continue;
    jobs.set(cells[0]!, { stage: cells[1]!, needs: cells.at(-1)! });
  }
  return jobs;
}

describe("ci gitlab", () => {
  it("generates a child pipeline GitLab's schema accepts, with needs following the graph", async () => {
    const { graph, plan: p } = await examplePlan({ tags: {}, lastBuild: {} }, "post-merge");
    const text = generateGitlabCi(graph, p, {
      imagesFile: EXAMPLE,
      runnerTags: { arm64: ["aarch64"] },
      jobImage: "registry.example.org/rootstock:1",
    });
    const doc = parse(text);
    assert.deepEqual(doc["build-arm64_test-gl"].tags, ["aarch64"]);
    assert.match(
      doc["build-x86_64_test-gl"].script[0],
      /--image test-gl@x86_64 --channel pre-merge --expect-tag gl-/,
    );
    await withTempDir(async (dir) => {
      const jobs = await listJobs(dir, text);
      assert.deepEqual(jobs.get("build-x86_64_test-base"), { stage: "build", needs: "[]" });
      assert.deepEqual(jobs.get("build-arm64_test-vk"), { stage: "build", needs: "[build-arm64_test-base]" });
      assert.deepEqual(jobs.get("build-x86_64_build"), {
        stage: "build",
        needs: "[build-x86_64_build-base]",
      });
      assert.deepEqual(jobs.get("promote-x86_64_test-gl"), {
        stage: "promote",
        needs: "[build-x86_64_test-gl]",
      });
      assert.deepEqual(jobs.get("export-lava-x86_64_test-gl"), {
        stage: "export",
        needs: "[build-x86_64_test-gl]",
      });
      assert.equal([...jobs.keys()].filter((j) => j.startsWith("build-")).length, 10);
      assert.equal([...jobs.keys()].filter((j) => j.startsWith("promote-")).length, 10);
      assert.equal([...jobs.keys()].filter((j) => j.startsWith("export-")).length, 2);
    });
  });

  it("builds only what changed; already pre-merged images get a promote job only", async () => {
    const first = await examplePlan({ tags: {}, lastBuild: {} }, "post-merge");
    const state: DestinationState = { tags: {}, lastBuild: {} };
    for (const image of first.plan.images) {
      // everything was built in a merge request, except test-vk which is not there at all
      if (image.name !== "test-vk") state.tags[image.repository] = [channelTag(image.tag, "pre-merge")];
      state.lastBuild[image.repository] = image.record;
    }
    const { graph, plan: p } = await examplePlan(state, "post-merge");
    await withTempDir(async (dir) => {
      const jobs = await listJobs(dir, generateGitlabCi(graph, p, { imagesFile: EXAMPLE }));
      assert.deepEqual(
        [...jobs.keys()].filter((j) => j.startsWith("build-")),
        ["build-x86_64_test-vk", "build-arm64_test-vk"],
      );
      assert.deepEqual(jobs.get("build-x86_64_test-vk")?.needs, "[]", "its parent already exists");
      assert.deepEqual(jobs.get("promote-x86_64_test-base")?.needs, "[]");
      assert.deepEqual(jobs.get("promote-arm64_test-vk")?.needs, "[build-arm64_test-vk]");
    });
  });

  it("the check can fail: gitlab-ci-local rejects a broken pipeline", async () => {
    const { graph, plan: p } = await examplePlan({ tags: {}, lastBuild: {} }, "pre-merge");
    const broken = generateGitlabCi(graph, p, { imagesFile: EXAMPLE }).replace(
      "needs:\n    - build-x86_64_test-base",
      "needs:\n    - build-x86_64_test-bsae",
    );
    await withTempDir(async (dir) => {
      await assert.rejects(listJobs(dir, broken), /build-x86_64_test-bsae/);
    });
  });

  it("emits a valid pipeline when nothing must be built", async () => {
    const first = await examplePlan({ tags: {}, lastBuild: {} }, "pre-merge");
    const state: DestinationState = { tags: {}, lastBuild: {} };
    for (const image of first.plan.images) state.tags[image.repository] = [image.tag];
    const { graph, plan: p } = await examplePlan(state, "post-merge");
    const text = generateGitlabCi(graph, p, { imagesFile: EXAMPLE });
    await withTempDir(async (dir) => {
      const jobs = await listJobs(dir, text);
      assert.deepEqual([...jobs.keys()], ["images-up-to-date"]);
    });
  });
});
