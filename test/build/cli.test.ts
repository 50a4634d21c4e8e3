/** The graph commands through the real CLI: plan --json, ci gitlab, one-line errors. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { parse } from "yaml";
import { rootstock } from "../helpers/cli.js";
import { hasDockerRegistry, startRegistry } from "../helpers/registry.js";
import { withTempDir } from "../helpers/tmp.js";

const file = "examples/mesa/images.yaml";
const execFileAsync = promisify(execFile);

describe("rootstock plan / ci gitlab", () => {
  it("plan --json on an empty store: every image to build, with its tag and reason", async () => {
    await withTempDir(async (dir) => {
      const r = await rootstock(["--store", join(dir, "s"), "--json", "plan", file, "--arch", "x86_64"], {
        env: { CI_COMMIT_BRANCH: "feature", CI_DEFAULT_BRANCH: "main" },
      });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as {
        channel: string;
        images: Array<{ id: string; action: string; tag: string; targetTag: string; reasons: string[] }>;
      };
      assert.equal(out.channel, "pre-merge");
      assert.deepEqual(
        out.images.map((i) => i.id),
        ["test-base@x86_64", "test-gl@x86_64", "test-vk@x86_64", "build-base@x86_64", "build@x86_64"],
      );
      for (const i of out.images) {
        assert.equal(i.action, "build");
        assert.equal(i.targetTag, `pre-${i.tag}`);
        assert.deepEqual(i.reasons, ["no earlier build recorded at the destination"]);
      }
    });
  });

  it("ci gitlab writes a pipeline with a build job per image, parents first", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "child.yml");
      const r = await rootstock(
        [
          "--store",
          join(dir, "s"),
          "ci",
          "gitlab",
          file,
          "--to",
          "store:",
          "--channel",
          "pre-merge",
          "-o",
          out,
        ],
        {},
      );
      assert.equal(r.code, 0, r.stderr);
      const doc = parse(await readFile(out, "utf8")) as Record<
        string,
        { needs?: string[]; script?: string[] }
      >;
      assert.deepEqual(doc["build-x86_64_test-gl"]?.needs, ["build-x86_64_test-base"]);
      assert.match(doc["build-arm64_build"]?.script?.[0] ?? "", /--image build@arm64 --channel pre-merge/);
    });
  });

  it("bad input: one line naming what is wrong", async () => {
    await withTempDir(async (dir) => {
      const unknown = await rootstock(["--store", join(dir, "s"), "plan", file, "nosuch"]);
      assert.notEqual(unknown.code, 0);
      assert.match(unknown.stderr, /^rootstock: unknown image nosuch \(images: test-base, /);
      assert.equal(unknown.stderr.trim().split("\n").length, 1);
      const dest = await rootstock(["--store", join(dir, "s"), "plan", file, "--to", "nowhere"]);
      assert.match(
        dest.stderr,
        /^rootstock: --to nowhere: expected store:\[PREFIX\], oci:DIR or a registry path/,
      );
      const age = await rootstock([
        "--store",
        join(dir, "s"),
        "store",
        "gc",
        "--keep-pre-merge",
        "two weeks",
      ]);
      assert.match(
        age.stderr,
        /^rootstock: --keep-pre-merge "two weeks": expected a number and s, m, h, d or w/,
      );
    });
  });
});

describe("rootstock build to a registry", () => {
  it("pre-merge build, promote by manifest PUT (no blob upload), then plan keeps it", async (t) => {
    if (!(await hasDockerRegistry())) return t.skip("docker-registry not installed");
    const reg = await startRegistry();
    try {
      await withTempDir(async (dir) => {
        await mkdir(join(dir, "root", "etc"), { recursive: true });
        await writeFile(join(dir, "root", "etc", "greeting"), "hello\n");
        await execFileAsync("tar", ["-C", join(dir, "root"), "-cf", join(dir, "tiny.tar"), "."]);
        const images = join(dir, "images.yaml");
        await writeFile(
          images,
          "version: 1\nrepository-prefix: ci\nimages:\n  base:\n    from: tarball:tiny.tar\n",
        );
        const to = `docker://${reg.host}/group/project`;
        const store = ["--store", join(dir, "s")];
        const built = await rootstock([
          ...store,
          "--json",
          "build",
          images,
          "--to",
          to,
          "--channel",
          "pre-merge",
        ]);
        assert.equal(built.code, 0, built.stderr);
        const image = (JSON.parse(built.stdout) as { images: Array<{ tag: string; digest: string }> })
          .images[0]!;
        const before = (await reg.accessLog()).filter(
          (e) => e.method === "PUT" || e.method === "POST",
        ).length;
        const promoted = await rootstock([...store, "promote", "--to", to, `ci/x86_64_base:${image.tag}`]);
        assert.equal(promoted.code, 0, promoted.stderr);
        const writes = (await reg.accessLog())
          .filter((e) => e.method === "PUT" || e.method === "POST")
          .slice(before);
        assert.ok(
          writes.length > 0 && writes.every((e) => e.path.includes("/manifests/")),
          JSON.stringify(writes),
        );
        const plan = await rootstock([
          ...store,
          "--json",
          "plan",
          images,
          "--to",
          to,
          "--channel",
          "post-merge",
        ]);
        const planned = (JSON.parse(plan.stdout) as { images: Array<{ action: string }> }).images[0]!;
        assert.equal(planned.action, "keep");
      });
    } finally {
      await reg.stop();
    }
  });
});
