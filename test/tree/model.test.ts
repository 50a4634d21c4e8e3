/**
 * The pure core: paths, the Tree, OCI layer semantics, diff and the tree digest on
 * trees built in memory (no disk).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { sha256 } from "../../src/oci/digest.js";
import { treeDigest } from "../../src/tree/digest.js";
import { applyLayers, diff, type LayerEntry, layerEntryName, treeAsLayer } from "../../src/tree/layer.js";
import { compareBytes, normalisePath } from "../../src/tree/path.js";
import { Tree, type TreeNode } from "../../src/tree/tree.js";

function file(content: string, extra: Partial<TreeNode> = {}): TreeNode {
  return {
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: { sec: 1_700_000_000, nsec: 0 },
    size: Buffer.byteLength(content),
    digest: sha256(content),
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    ...extra,
  };
}

function dir(extra: Partial<TreeNode> = {}): TreeNode {
  return { ...file(""), type: "dir", mode: 0o755, size: 0, digest: undefined, ...extra };
}

function symlink(target: string): TreeNode {
  return { ...file(""), type: "symlink", mode: 0o777, size: 0, digest: undefined, linkTarget: target };
}

/** A tree from path → node; parents must come first. */
function treeOf(entries: Array<[string, TreeNode]>): Tree {
  const tree = new Tree(dir());
  for (const [path, node] of entries) tree.set(path, node);
  return tree;
}

function names(entries: LayerEntry[]): string[] {
  return entries.map((e) => (e.kind === "hardlink" ? `${e.path} => ${e.target}` : layerEntryName(e)));
}

describe("paths", () => {
  it("normalises archive names and rejects escapes", () => {
    assert.equal(normalisePath("./usr//bin/"), "usr/bin");
    assert.equal(normalisePath("/etc/./passwd"), "etc/passwd");
    assert.equal(normalisePath("./"), "");
    assert.throws(
      () => normalisePath("usr/../../etc/shadow"),
      (e) => isRootstockError(e, "UNSAFE_PATH") && e.message.includes("usr/../../etc/shadow"),
    );
    assert.throws(
      () => normalisePath("a\0b"),
      (e) => isRootstockError(e, "UNSAFE_PATH"),
    );
  });

  it("normalises every short name as a component-by-component walk does (fast path included)", () => {
    // Every name of up to 5 characters over "/", ".", "a", NUL: covers each shape the
    // already-normal fast path must send to the full walk.
    const walk = (name: string): string => {
      if (name.includes("\0")) return "UNSAFE";
      const parts: string[] = [];
      for (const part of name.split("/")) {
        if (part === "" || part === ".") continue;
        if (part === "..") return "UNSAFE";
        parts.push(part);
      }
      return parts.join("/");
    };
    let names = [""];
    let checked = 0;
    for (let len = 0; len <= 5; len++) {
      for (const name of names) {
        let got: string;
        try {
          got = normalisePath(name);
        } catch (e) {
          assert.ok(isRootstockError(e, "UNSAFE_PATH"));
          got = "UNSAFE";
        }
        assert.equal(got, walk(name), JSON.stringify(name));
        checked++;
      }
      names = names.flatMap((n) => ["/", ".", "a", "\0"].map((c) => n + c));
    }
    assert.equal(checked, 1365);
  });

  it("sorts by UTF-8 bytes, parents before children", () => {
    const paths = ["a/b", "a", "a-b", "a.b", "\u{1F600}", "\uFF21", "Z"];
    const sorted = [...paths].sort(compareBytes);
    const byBytes = [...paths].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual(sorted, byBytes);
    assert.ok(sorted.indexOf("a") < sorted.indexOf("a/b"));
  });
});

describe("applyLayers (OCI semantics)", () => {
  const base = treeOf([
    ["etc", dir()],
    ["etc/passwd", file("root")],
    ["etc/group", file("root")],
    ["usr", dir()],
    ["usr/lib", dir()],
    ["usr/lib/a.so", file("a")],
    ["usr/lib/b.so", file("b")],
    ["var", dir()],
    ["var/cache", dir()],
    ["var/cache/x", file("x")],
  ]);

  it("whiteouts delete, opaque markers hide lower content only, later entries replace", () => {
    const result = applyLayers(base, [
      { kind: "whiteout", path: "etc/group" },
      { kind: "node", path: "usr/lib/new.so", node: file("n") },
      { kind: "opaque", path: "usr/lib" }, // after new.so: must not hide it
      { kind: "whiteout", path: "var" },
      { kind: "node", path: "etc/passwd", node: file("root2") },
      { kind: "node", path: "opt/deep/file", node: file("d") }, // implied parents
    ]);
    assert.deepEqual(result.sortedPaths(), [
      "",
      "etc",
      "etc/passwd",
      "opt",
      "opt/deep",
      "opt/deep/file",
      "usr",
      "usr/lib",
      "usr/lib/new.so",
    ]);
    assert.equal(result.get("etc/passwd")!.digest, sha256("root2"));
    assert.equal(result.get("opt")!.mode, 0o755);
    // The base is untouched.
    assert.ok(base.has("etc/group") && base.has("var/cache/x"));
  });

  it("a whiteout does not delete what the same layer added", () => {
    const result = applyLayers(base, [
      { kind: "node", path: "etc/motd", node: file("hi") },
      { kind: "whiteout", path: "etc/motd" },
    ]);
    assert.ok(result.has("etc/motd"));
  });

  it("a non-directory replacing a directory removes the subtree; hard links share the inode", () => {
    const result = applyLayers(base, [
      { kind: "node", path: "usr/lib", node: file("now a file") },
      { kind: "hardlink", path: "etc/passwd-", target: "etc/passwd" },
    ]);
    assert.ok(!result.has("usr/lib/a.so"));
    assert.equal(result.get("usr/lib")!.type, "file");
    assert.equal(result.get("etc/passwd-"), result.get("etc/passwd"));
    assert.throws(
      () => applyLayers(base, [{ kind: "hardlink", path: "x", target: "missing" }]),
      (e) => isRootstockError(e, "TAR_FORMAT") && e.message.includes('"x"'),
    );
  });
});

describe("diff", () => {
  const shared = file("shared", { mode: 0o755 });
  const lower = treeOf([
    ["bin", dir()],
    ["bin/a", shared],
    ["bin/b", shared],
    ["bin/c", file("c")],
    ["doomed", dir()],
    ["doomed/sub", dir()],
    ["doomed/sub/x", file("x")],
    ["wiped", dir()],
    ["wiped/1", file("1")],
    ["wiped/2", file("2")],
    ["turn", dir()],
    ["turn/inner", file("i")],
    ["keep", file("k")],
  ]);

  it("emits changes, whiteouts at the top of deletions, opaque dirs, whole hard link groups", () => {
    const upper = lower.clone();
    upper.delete("doomed");
    upper.delete("bin/c");
    upper.delete("wiped/1");
    upper.delete("wiped/2");
    upper.set("wiped/3", file("3"));
    upper.set("turn", file("was a dir"));
    const relinked = file("shared", { mode: 0o700 }); // chmod on the inode: both names change
    upper.set("bin/a", relinked);
    upper.set("bin/b", relinked);
    upper.set("new", symlink("keep"));
    const layer = diff(lower, upper);
    assert.deepEqual(
      names(layer),
      [
        "bin/.wh.c",
        "bin/a",
        "bin/b => bin/a",
        ".wh.doomed",
        "new",
        "turn",
        "wiped",
        "wiped/.wh..wh..opq",
        "wiped/3",
      ].sort(compareBytes),
    );
    assert.equal(treeDigest(applyLayers(lower, layer)), treeDigest(upper));
  });

  it("is empty for identical trees and reproduces any tree from nothing", () => {
    assert.deepEqual(diff(lower, lower.clone()), []);
    const full = treeAsLayer(lower);
    assert.equal(full.filter((e) => e.kind === "hardlink").length, 1);
    assert.equal(treeDigest(applyLayers(new Tree(), full)), treeDigest(lower));
  });

  it("splitting a hard link group re-emits both names", () => {
    const upper = lower.clone();
    upper.set("bin/b", file("shared", { mode: 0o755 })); // same content, own inode now
    const layer = diff(lower, upper);
    assert.deepEqual(names(layer), ["bin/a", "bin/b"]);
    const applied = applyLayers(lower, layer);
    assert.notEqual(applied.get("bin/a"), applied.get("bin/b"));
    assert.equal(treeDigest(applied), treeDigest(upper));
  });
});

describe("treeDigest", () => {
  const reference = treeOf([
    ["etc", dir()],
    ["etc/hosts", file("127.0.0.1 localhost\n")],
    ["etc/hosts.hard", file("x")],
    ["bin", dir()],
    [
      "bin/ping",
      file("ELF", { mode: 0o4755, xattrs: [["security.capability", new Uint8Array([1, 0, 0, 2])]] }),
    ],
    ["bin/sh", symlink("dash")],
    ["dev", dir()],
    ["dev/null", { ...file(""), type: "char", digest: undefined, size: 0, devmajor: 1, devminor: 3 }],
  ]);
  const digest = treeDigest(reference);

  function variant(change: (t: Tree) => void): string {
    const t = reference.clone();
    change(t);
    return treeDigest(t);
  }

  it("is a sha256 and ignores what forms do not all keep", () => {
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    // Root attributes, nanoseconds, symlink modes and SELinux labels do not count.
    assert.equal(
      variant((t) => t.set("", dir({ mode: 0o700, mtime: { sec: 5, nsec: 0 } }))),
      digest,
    );
    assert.equal(
      variant((t) => t.set("etc/hosts", { ...t.get("etc/hosts")!, mtime: { sec: 1_700_000_000, nsec: 7 } })),
      digest,
    );
    assert.equal(
      variant((t) => t.set("bin/sh", { ...t.get("bin/sh")!, mode: 0o755 })),
      digest,
    );
    for (const hostOnly of [
      "security.selinux",
      "security.ima",
      "trusted.overlay.opaque",
      "system.posix_acl_access",
    ]) {
      assert.equal(
        variant((t) => t.set("bin", dir({ xattrs: [[hostOnly, Buffer.from("y")]] }))),
        digest,
        hostOnly,
      );
    }
    assert.equal(
      variant((t) => t.set("bin", dir({ xattrs: [["user.empty", Buffer.alloc(0)]] }))),
      digest,
    );
    assert.notEqual(
      variant((t) => t.set("bin", dir({ xattrs: [["user.x", Buffer.from("y")]] }))),
      digest,
    );
  });

  it("changes with any content change", () => {
    const changes: Array<[string, (t: Tree) => void]> = [
      ["content", (t) => t.set("etc/hosts", file("127.0.0.2 localhost\n"))],
      ["mode", (t) => t.set("bin/ping", { ...t.get("bin/ping")!, mode: 0o755 })],
      ["owner", (t) => t.set("etc/hosts", { ...t.get("etc/hosts")!, uid: 1 })],
      ["group", (t) => t.set("etc/hosts", { ...t.get("etc/hosts")!, gid: 1 })],
      ["mtime", (t) => t.set("etc", { ...t.get("etc")!, mtime: { sec: 1_700_000_001, nsec: 0 } })],
      ["xattr", (t) => t.set("bin/ping", { ...t.get("bin/ping")!, xattrs: [] })],
      ["symlink target", (t) => t.set("bin/sh", symlink("bash"))],
      ["device", (t) => t.set("dev/null", { ...t.get("dev/null")!, devminor: 5 })],
      ["type", (t) => t.set("dev/null", { ...t.get("dev/null")!, type: "block" })],
      [
        "name",
        (t) => {
          t.set("etc/hosts2", t.get("etc/hosts")!);
          t.delete("etc/hosts");
        },
      ],
      ["hard link", (t) => t.set("etc/hosts.hard", t.get("etc/hosts")!)],
      ["extra dir", (t) => t.set("tmp", dir())],
    ];
    const seen = new Set<string>([digest]);
    for (const [what, change] of changes) {
      const d = variant(change);
      assert.ok(!seen.has(d), `${what} must change the digest`);
      seen.add(d);
    }
  });

  it("groups hard-linked regular files only: linked symlinks are copies", () => {
    const linked = reference.clone();
    linked.set("bin/sh2", linked.get("bin/sh")!);
    const copied = reference.clone();
    copied.set("bin/sh2", symlink("dash"));
    assert.equal(treeDigest(linked), treeDigest(copied));
    const fileLinked = reference.clone();
    fileLinked.set("etc/hosts2", fileLinked.get("etc/hosts")!);
    const fileCopied = reference.clone();
    fileCopied.set("etc/hosts2", file("127.0.0.1 localhost\n"));
    assert.notEqual(treeDigest(fileLinked), treeDigest(fileCopied));
  });

  it("refuses unhashed files", () => {
    const t = reference.clone();
    t.set("etc/unhashed", { ...file("x"), digest: undefined });
    assert.throws(
      () => treeDigest(t),
      (e) => isRootstockError(e, "INTERNAL") && e.message.includes("etc/unhashed"),
    );
  });
});
