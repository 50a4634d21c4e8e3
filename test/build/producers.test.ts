import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, lstat, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import type { MmdebstrapOptions, ScriptStep } from "../../src/build/graph.js";
import { produceImport } from "../../src/build/producers/import.js";
import { mmdebstrapArgs, produceMmdebstrap } from "../../src/build/producers/mmdebstrap.js";
import { mountsUnder, removeTree } from "../../src/build/producers/mounts.js";
import { produceScript, STAGING_DIR, scriptDriver } from "../../src/build/producers/script.js";
import { isRootstockError } from "../../src/errors.js";
import type { ProgressEvent } from "../../src/progress.js";
import { debianRootfsDir, FIXTURE_DIR } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

const emptyStep: ScriptStep = { packages: [], files: [], scripts: [], run: [], env: {} };

describe("mounts", { skip: !isRoot && "needs root to mount" }, () => {
  it("removeTree unmounts first: files behind a bind mount survive", async () => {
    await withTempDir(async (dir) => {
      const outside = join(dir, "outside");
      const tree = join(dir, "tree");
      await mkdir(outside);
      await writeFile(join(outside, "precious"), "keep me");
      await mkdir(join(tree, "proc"), { recursive: true });
      await mkdir(join(tree, "bound"), { recursive: true });
      await run("mount", ["-t", "tmpfs", "tmpfs", join(tree, "proc")]);
      await run("mount", ["--bind", outside, join(tree, "bound")]);
      assert.deepEqual(
        await mountsUnder(tree),
        [join(tree, "bound"), join(tree, "proc")].sort((a, b) => b.length - a.length),
      );
      await removeTree(tree);
      assert.equal(await readFile(join(outside, "precious"), "utf8"), "keep me");
      assert.deepEqual(await mountsUnder(tree), []);
      await assert.rejects(stat(tree));
    });
  });
});

describe("script producer", () => {
  it("writes a driver that installs, copies, runs scripts and commands in order", () => {
    const text = scriptDriver({
      packages: ["vim", "less"],
      files: [{ src: "a.conf", dest: "/etc/a b.conf", mode: 0o600 }],
      scripts: ["scripts/x.sh"],
      run: ["echo 'hi'"],
      env: {},
    });
    const order = [
      "apt-get install -y",
      "/etc/a b.conf",
      `${STAGING_DIR}/scripts/0`,
      `sh -c 'echo '\\''hi'\\'''`,
    ];
    const positions = order.map((s) => text.indexOf(s));
    assert.ok(
      positions.every((p) => p > 0),
      `driver misses a step:\n${text}`,
    );
    assert.deepEqual(
      [...positions].sort((a, b) => a - b),
      positions,
    );
    assert.match(text, /chmod 600 '\/etc\/a b\.conf'/);
    assert.match(text, /-- 'vim' 'less'/);
  });

  it("runs steps in a chroot of a copied Debian root, with /proc and env, leaving no mount or staging", {
    skip: !isRoot && "needs root",
  }, async () => {
    const parent = await debianRootfsDir("essential");
    await withTempDir(async (dir) => {
      const rootfs = join(dir, "rootfs");
      await run("cp", ["-a", parent, rootfs]);
      const project = join(dir, "project");
      await mkdir(join(project, "scripts"), { recursive: true });
      await writeFile(join(project, "tool.sh"), "#!/bin/sh\necho tool\n");
      await writeFile(
        join(project, "scripts/edit.sh"),
        [
          "#!/bin/sh",
          "set -eu",
          "echo added > /etc/rootstock-added",
          "rm /etc/issue.net",
          // proc is mounted, and we are pid 1's child in a fresh pid namespace
          'test "$(ls /proc | grep -c "^[0-9]*$")" -lt 10',
          'echo "$MESA_CI $HOME" > /etc/rootstock-env',
          "test -c /dev/null && echo x > /dev/null",
          "echo 'nameserver 192.0.2.1' > /etc/resolv.conf || true",
          "",
        ].join("\n"),
      );
      const resolvBefore = await readFile("/etc/resolv.conf", "utf8").catch(() => "");
      const imageResolvBefore = await readFile(join(rootfs, "etc/resolv.conf"), "utf8");
      const events: ProgressEvent[] = [];
      await produceScript({
        rootfs,
        baseDir: project,
        step: {
          ...emptyStep,
          files: [{ src: "tool.sh", dest: "/usr/local/bin/tool", mode: 0o755 }],
          scripts: ["scripts/edit.sh"],
          run: ["tool > /etc/rootstock-ran"],
          env: { MESA_CI: "yes" },
        },
        progress: (e) => events.push(e),
      });
      assert.equal(await readFile(join(rootfs, "etc/rootstock-added"), "utf8"), "added\n");
      await assert.rejects(lstat(join(rootfs, "etc/issue.net")));
      assert.equal(await readFile(join(rootfs, "etc/rootstock-env"), "utf8"), "yes /root\n");
      assert.equal(await readFile(join(rootfs, "etc/rootstock-ran"), "utf8"), "tool\n");
      assert.equal((await stat(join(rootfs, "usr/local/bin/tool"))).mode & 0o7777, 0o755);
      await assert.rejects(lstat(join(rootfs, STAGING_DIR)), "staging directory removed");
      assert.deepEqual(await mountsUnder(rootfs), []);
      assert.deepEqual(await readdir(join(rootfs, "proc")), [], "nothing left in /proc");
      assert.equal(
        await readFile("/etc/resolv.conf", "utf8").catch(() => ""),
        resolvBefore,
        "host untouched",
      );
      assert.equal(await readFile(join(rootfs, "etc/resolv.conf"), "utf8"), imageResolvBefore);
      assert.ok(events.some((e) => e.type === "note" && e.message.includes("script scripts/edit.sh")));

      // A failing script names its step; the tree is left for the caller, unmounted.
      await writeFile(
        join(project, "scripts/fail.sh"),
        "#!/bin/sh\necho 'boom: no such thing' >&2\nexit 3\n",
      );
      await assert.rejects(
        produceScript({ rootfs, baseDir: project, step: { ...emptyStep, scripts: ["scripts/fail.sh"] } }),
        (err) => {
          assert.ok(isRootstockError(err, "TOOL_FAILED"));
          assert.equal(
            err.message,
            "script producer failed during script scripts/fail.sh (exit 3): boom: no such thing",
          );
          return true;
        },
      );
      assert.deepEqual(await mountsUnder(rootfs), []);
      await assert.rejects(lstat(join(rootfs, STAGING_DIR)));
    });
  });

  it("refuses a root whose mount point is a symlink out of it", {
    skip: !isRoot && "needs root",
  }, async () => {
    await withTempDir(async (dir) => {
      const rootfs = join(dir, "rootfs");
      await mkdir(join(rootfs, "bin"), { recursive: true });
      await writeFile(join(rootfs, "bin/sh"), "");
      await chmod(join(rootfs, "bin/sh"), 0o755);
      await run("ln", ["-s", "/", join(rootfs, "proc")]);
      await assert.rejects(
        produceScript({ rootfs, baseDir: dir, step: { ...emptyStep, run: ["true"] } }),
        (err) => isRootstockError(err, "UNSAFE_PATH") && /proc is not a directory/.test(err.message),
      );
      await assert.rejects(lstat(join(rootfs, STAGING_DIR)));
    });
  });
});

describe("import producer", () => {
  it("extracts a rootfs tarball, and asks for an unpacker for registry images", async () => {
    await withTempDir(async (dir) => {
      await mkdir(join(dir, "src/etc"), { recursive: true });
      await writeFile(join(dir, "src/etc/os-release"), "ID=test\n");
      await run("tar", ["-C", join(dir, "src"), "-cf", join(dir, "root.tar"), "."]);
      const target = join(dir, "out");
      await produceImport({ source: { transport: "tarball", path: "root.tar" }, baseDir: dir, target });
      assert.equal(await readFile(join(target, "etc/os-release"), "utf8"), "ID=test\n");
      await assert.rejects(
        produceImport({ source: { transport: "tarball", path: "root.tar" }, baseDir: dir, target }),
        (err) => isRootstockError(err, "ALREADY_EXISTS"),
      );
      await writeFile(join(dir, "bad.tar"), "not a tar archive at all".repeat(40));
      const bad = join(dir, "bad");
      await assert.rejects(
        produceImport({ source: { transport: "tarball", path: "bad.tar" }, baseDir: dir, target: bad }),
        (err) => isRootstockError(err, "TOOL_FAILED") && err.message.startsWith("import (tar -x) failed"),
      );
      await assert.rejects(stat(bad), "a failed import leaves nothing behind");
      await assert.rejects(
        produceImport({
          source: { transport: "docker", reference: "debian:bookworm", pinned: false },
          baseDir: dir,
          target: join(dir, "reg"),
        }),
        /import from debian:bookworm needs an image unpacker/,
      );
    });
  });
});

describe("mmdebstrap producer", () => {
  const options: MmdebstrapOptions = {
    suite: "bookworm",
    // extract + one package: a real mmdebstrap run that stays quick on a loaded machine
    variant: "extract",
    architecture: "amd64",
    mirrors: ["http://deb.debian.org/debian"],
    components: ["main"],
    include: ["base-files"],
    // the extract variant has no customize phase: its hooks run after extraction
    hooks: { setup: [], extract: ["hooks/mark.sh"], essential: [], customize: [] },
    aptOptions: [],
    dpkgOptions: [],
  };

  it("builds the argv from a definition", () => {
    const args = mmdebstrapArgs(
      { ...options, include: ["a", "b"], dpkgOptions: ["path-exclude=/usr/share/man/*"] },
      "/t",
      "root",
      { ...options.hooks, extract: [], customize: ["/p/it's.sh"] },
    );
    assert.deepEqual(args, [
      "mmdebstrap",
      "--mode=root",
      "--format=directory",
      "--variant=extract",
      "--architectures=amd64",
      "--components=main",
      "--include=a,b",
      "--dpkgopt=path-exclude=/usr/share/man/*",
      `--customize-hook=sh '/p/it'\\''s.sh' "$1"`,
      "bookworm",
      "/t",
      "http://deb.debian.org/debian",
    ]);
  });

  it("makes a Debian root directory with hooks run, and cleans up after a failure", {
    skip: !isRoot && "needs root",
  }, async () => {
    await withTempDir(async (dir) => {
      await mkdir(join(dir, "hooks"));
      await writeFile(join(dir, "hooks/mark.sh"), 'set -eu\necho "$1" > "$1/etc/rootstock-hook"\n');
      const target = join(dir, "root");
      // the .deb cache makes every run after the first one independent of the network
      const debCache = join(FIXTURE_DIR, "apt-archives-bookworm-amd64");
      await produceMmdebstrap({ options, baseDir: dir, target, sourceDateEpoch: 1700000000, debCache });
      assert.ok(
        (await readdir(debCache)).some((f) => f.endsWith(".deb")),
        "the cache was filled",
      );
      assert.match(await readFile(join(target, "etc/debian_version"), "utf8"), /^12\./);
      assert.equal(await readFile(join(target, "etc/rootstock-hook"), "utf8"), `${target}\n`);
      assert.deepEqual(await mountsUnder(target), []);

      const failed = join(dir, "failed");
      await writeFile(join(dir, "hooks/fail.sh"), "echo 'hook says no' >&2; exit 7\n");
      const failing = { ...options, hooks: { ...options.hooks, setup: ["hooks/fail.sh"] } };
      await assert.rejects(
        produceMmdebstrap({ options: failing, baseDir: dir, target: failed, sourceDateEpoch: 1700000000 }),
        (err) => isRootstockError(err, "TOOL_FAILED") && err.message.startsWith("mmdebstrap failed"),
      );
      await assert.rejects(stat(failed), "the failed target is removed");
      assert.deepEqual(await mountsUnder(dir), []);
    });
  });
});
