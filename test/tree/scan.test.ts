/**
 * scan() of a real directory with every kind of entry, and the tree digest agreeing
 * across forms: the directory, GNU tar's and bsdtar's archives of it, and the
 * directory extracted again from the archive elsewhere.
 */
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { sha256 } from "../../src/oci/digest.js";
import { readTarFile } from "../../src/tar/index.js";
import { treeDigest } from "../../src/tree/digest.js";
import { hashTree, scan } from "../../src/tree/scan.js";
import { fromTar } from "../../src/tree/tar.js";
import { withTempDir } from "../helpers/tmp.js";
import { LONG_DIR, makeSampleTree, ODD_NAME, run } from "./sample.js";

const GNU_TAR_CREATE = ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-c"];
const GNU_TAR_EXTRACT = ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-x", "-p"];

/** One sample tree for the whole file (the machine is shared: spawn little); tests that change it copy it. */
let sampleDir: string;
let sample: string;
before(async () => {
  sampleDir = await mkdtemp(join(tmpdir(), "rootstock-tree-scan-"));
  sample = join(sampleDir, "root");
  await makeSampleTree(sample);
});
after(async () => {
  await rm(sampleDir, { recursive: true, force: true });
});

async function copyOfSample(tmp: string, name = "root"): Promise<string> {
  const root = join(tmp, name);
  await run("cp", ["-a", sample, root]);
  return root;
}

describe("scan", () => {
  it("records every kind of entry without following symlinks", async () => {
    {
      const root = sample;
      const progressTypes = new Set<string>();
      const { tree, report } = await scan(root, { progress: (e) => progressTypes.add(e.type) });
      assert.ok(progressTypes.has("start") && progressTypes.has("done"));

      assert.deepEqual(report.skipped, [{ path: "tmp/sock", reason: "socket" }]);
      assert.ok(!tree.has("tmp/sock"));

      const hosts = tree.get("etc/hosts")!;
      assert.equal(hosts.type, "file");
      assert.equal(hosts.digest, sha256("127.0.0.1 localhost\n"));
      assert.equal(hosts.size, 20);
      assert.deepEqual(hosts.mtime, { sec: 1_600_000_000, nsec: 123_456_000 });
      assert.deepEqual(hosts.xattrs, [["user.empty", Buffer.alloc(0)]]);

      const ping = tree.get("bin/ping")!;
      assert.equal(ping.mode, 0o4755);
      const capability = ping.xattrs.find(([n]) => n === "security.capability");
      assert.ok(capability, "security.capability is read");
      assert.equal(capability[1][0], 1); // VFS_CAP_REVISION_2 little-endian magic 0x02000001
      assert.equal(capability[1][3], 2);

      const sh = tree.get("bin/sh")!;
      assert.equal(sh.type, "symlink");
      assert.equal(sh.linkTarget, "busybox");
      assert.deepEqual(sh.mtime, { sec: 1_612_325_106, nsec: 987_654_321 });
      assert.deepEqual(sh.xattrs, [["trusted.on-symlink", Buffer.from("yes")]]);
      assert.equal(tree.get("var/lib/bin-link")!.type, "symlink");
      assert.ok(!tree.has("var/lib/bin-link/busybox"), "symlinked directory not followed");
      assert.equal(tree.get("etc/dangling")!.linkTarget, "/nonexistent/target");

      assert.equal(tree.get("bin/ls"), tree.get("bin/busybox"), "hard links share one node");
      assert.equal(tree.get("srv/shared/cat"), tree.get("bin/busybox"));
      assert.deepEqual([...tree.hardlinkGroups().values()], [["bin/busybox", "bin/ls", "srv/shared/cat"]]);

      const devNull = tree.get("dev/null")!;
      assert.equal(devNull.type, "char");
      assert.deepEqual([devNull.devmajor, devNull.devminor], [1, 3]);
      const loop = tree.get("dev/loop0")!;
      assert.deepEqual([loop.type, loop.devmajor, loop.devminor], ["block", 7, 0]);
      assert.equal(tree.get("dev/initctl")!.type, "fifo");

      assert.equal(tree.get("tmp")!.mode, 0o1777);
      assert.equal(tree.get("srv/shared")!.mode, 0o2775);
      const owned = tree.get("srv/owned")!;
      assert.deepEqual([owned.uid, owned.gid], [1234, 5678]);
      assert.deepEqual(tree.get("etc")!.mtime, { sec: 1_546_300_800, nsec: 0 });
      assert.deepEqual(tree.get(ODD_NAME)!.xattrs, [
        ["user.binary", Buffer.from([0x00, 0xff, 0x0a, 0x3d, 0x5c])],
      ]);
      assert.deepEqual(tree.get("etc")!.xattrs, [["user.comment", Buffer.from("a directory")]]);
      assert.ok(tree.has(`${LONG_DIR}/${"f".repeat(90)}.txt`));
      assert.equal(tree.root.type, "dir");
    }
  });

  it("hashes lazily with hashTree and refuses what is not a directory", async () => {
    {
      const root = sample;
      const { tree } = await scan(root, { hash: false });
      assert.equal(tree.get("etc/hosts")!.digest, undefined);
      await hashTree(root, tree);
      const { tree: hashed } = await scan(root);
      assert.equal(treeDigest(tree), treeDigest(hashed));
      await assert.rejects(scan(join(root, "etc/hosts")), (e) => isRootstockError(e, "INVALID_ARGUMENT"));
      await assert.rejects(
        scan(join(root, "missing")),
        (e) => isRootstockError(e, "NOT_FOUND") && e.message.includes("missing"),
      );
      // The argument may be a symlink to the directory (nothing below it is followed).
      const viaLink = await scan(join(root, "var/lib/bin-link"));
      assert.equal(viaLink.tree.get("busybox"), viaLink.tree.get("ls"));
      assert.ok(viaLink.tree.has("ping"));
    }
  });
});

describe("tree digest across forms", () => {
  let digest: string;

  before(async () => {
    digest = treeDigest((await scan(sample)).tree);
  });

  async function digestOfTar(path: string): Promise<string> {
    return treeDigest(await fromTar(readTarFile(path)));
  }

  it("is the same for the directory, GNU tar's archive and bsdtar's archive of it", async () => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      await makeSampleTree(root);
      assert.equal(treeDigest((await scan(root)).tree), digest, "a second sample made the same way");
      assert.equal(treeDigest((await scan(await copyOfSample(tmp, "copy"))).tree), digest, "cp -a");
      // GNU tar warns "socket ignored" and still exits 0.
      await run("tar", [...GNU_TAR_CREATE, "-f", join(tmp, "gnu.tar"), "-C", root, "."]);
      assert.equal(await digestOfTar(join(tmp, "gnu.tar")), digest, "GNU tar");
      await run("tar", [...GNU_TAR_CREATE, "--format=posix", "-f", join(tmp, "pax.tar"), "-C", root, "."]);
      assert.equal(await digestOfTar(join(tmp, "pax.tar")), digest, "GNU tar --format=posix");
      await run("bsdtar", ["--xattrs", "--numeric-owner", "-c", "-f", join(tmp, "bsd.tar"), "-C", root, "."]);
      assert.equal(await digestOfTar(join(tmp, "bsd.tar")), digest, "bsdtar");

      // Extracted again elsewhere (as root, so owners, devices and capabilities survive).
      const again = join(tmp, "again");
      await run("mkdir", [again]);
      await run("tar", [...GNU_TAR_EXTRACT, "-f", join(tmp, "gnu.tar"), "-C", again]);
      assert.equal(treeDigest((await scan(again)).tree), digest, "re-extracted directory");
    });
  });

  it("changes with one byte, mode, mtime second, owner or xattr, not with nanoseconds", async () => {
    await withTempDir(async (tmp) => {
      const root = await copyOfSample(tmp);
      const digestNow = async () => treeDigest((await scan(root)).tree);
      const seen = new Set([digest]);
      const expectChange = async (what: string, cmd: string[]) => {
        await run(cmd[0]!, cmd.slice(1), { cwd: root });
        const d = await digestNow();
        assert.ok(!seen.has(d), `${what} changes the digest`);
        seen.add(d);
      };
      const hostsBefore = await lstat(join(root, "etc/hosts"));
      await expectChange("capability", ["setcap", "-r", "bin/ping"]);
      await expectChange("one byte", [
        "sh",
        "-c",
        "printf 'x' | dd of=bin/ping bs=1 seek=1000 conv=notrunc status=none",
      ]);
      await expectChange("mode", ["chmod", "u-s", "bin/ping"]);
      await expectChange("owner", ["chown", "1:1", "etc/hosts"]);
      await expectChange("mtime second", ["touch", "-d", "2019-01-01 00:00:01", "etc"]);
      await expectChange("xattr value", ["setfattr", "-n", "user.comment", "-v", "changed", "etc"]);
      await expectChange("hard link split", [
        "sh",
        "-c",
        "cp bin/ls bin/ls.tmp && mv bin/ls.tmp bin/ls && touch -r bin/busybox bin/ls",
      ]);
      // Same second, other nanoseconds: not part of the digest.
      const before = await digestNow();
      await run("touch", ["-d", "@1600000000.999", join(root, "etc/hosts")]);
      assert.equal(
        hostsBefore.mtime.getTime() !== (await lstat(join(root, "etc/hosts"))).mtime.getTime(),
        true,
      );
      assert.equal(await digestNow(), before);
    });
  });
});

describe("scan edges", () => {
  it("stays on its filesystem unless asked, and refuses names that are not UTF-8", async (t) => {
    await withTempDir(async (tmp) => {
      const root = join(tmp, "root");
      await mkdir(join(root, "mnt"), { recursive: true });
      await writeFile(join(root, "a"), "a");
      try {
        await run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", join(root, "mnt")]);
      } catch {
        t.skip("cannot mount a tmpfs here");
        return;
      }
      try {
        await writeFile(join(root, "mnt", "inside"), "other filesystem");
        const { tree, report } = await scan(root);
        assert.ok(tree.get("mnt")?.type === "dir" && !tree.has("mnt/inside"));
        assert.deepEqual(
          report.skipped.map((s) => s.path),
          ["mnt"],
        );
        const crossed = await scan(root, { crossMounts: true });
        assert.ok(crossed.tree.has("mnt/inside"));
      } finally {
        await run("umount", [join(root, "mnt")]);
      }
      await run("sh", ["-c", `touch "${root}/$(printf 'bad\\377name')"`]);
      await assert.rejects(
        scan(root),
        (e) =>
          isRootstockError(e, "INVALID_FORMAT") && e.message.includes("bad") && e.message.includes("UTF-8"),
      );
    });
  });
});
