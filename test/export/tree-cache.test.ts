/**
 * The image tree cache: a tree of every node type (hard links, a hard-linked symlink,
 * binary xattrs, devices, odd times and names) reads back as the same tree, node
 * sharing included; a cache that does not read back as a tree is STORE_CORRUPT; and
 * exports of a store image use it from their second time on, with the same results.
 */
import assert from "node:assert/strict";
import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ContentStore } from "../../src/cas/store.js";
import { zstdCompress } from "../../src/compress/zstd.js";
import { isRootstockError } from "../../src/errors.js";
import { digestImage, digestPath } from "../../src/export/digest.js";
import { exportImage } from "../../src/export/export.js";
import { farmHolds, farmKeys } from "../../src/export/farm.js";
import type { OverlaySpec } from "../../src/export/overlay.js";
import { readCachedTree, writeCachedTree } from "../../src/export/tree-cache.js";
import { openEndpoint } from "../../src/image/endpoint.js";
import { importTarball } from "../../src/image/import.js";
import { summariseTree } from "../../src/image/inventory.js";
import { type Digest, sha256 } from "../../src/oci/digest.js";
import { parseReference } from "../../src/oci/reference.js";
import { Tree, type TreeNode, treeDigest } from "../../src/tree/index.js";
import { debianRootfsTar } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";

function node(type: TreeNode["type"], extra: Partial<TreeNode> = {}): TreeNode {
  return {
    type,
    mode: type === "dir" ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    mtime: { sec: 1_700_000_000, nsec: 0 },
    size: 0,
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    ...extra,
  };
}

function sampleTree(): Tree {
  const tree = new Tree(node("dir", { mode: 0o700, mtime: { sec: 5, nsec: 6 } }));
  const shared = node("file", { size: 3, digest: sha256("abc"), mode: 0o4755, uid: 1000, gid: 1001 });
  const link = node("symlink", { linkTarget: "../x y/ü", mode: 0o777 });
  tree.set("bin", node("dir"));
  tree.set("bin/a", shared);
  tree.set("bin/b", shared);
  tree.set("bin/c", node("file", { size: 3, digest: sha256("abc") })); // equal content, own inode
  tree.set("bin/empty", node("file", { digest: sha256("") }));
  tree.set("bin/l1", link);
  tree.set("bin/l2", link);
  tree.set("dev", node("dir", { mtime: { sec: -1, nsec: 999_999_999 } }));
  tree.set("dev/null", node("char", { devmajor: 1, devminor: 3, mode: 0o666 }));
  tree.set("dev/sda", node("block", { devmajor: 8, devminor: 0 }));
  tree.set("dev/fifo", node("fifo"));
  tree.set(
    "usr",
    node("dir", {
      xattrs: [
        ["security.capability", Uint8Array.from([0, 1, 0xff, 0x80])],
        ["user.x", Buffer.from("v")],
      ],
    }),
  );
  tree.set(
    "usr/\u{1F600} name",
    node("file", { size: 1, digest: sha256("z"), xattrs: [["user.e", new Uint8Array()]] }),
  );
  return tree;
}

function describeTree(tree: Tree): unknown[] {
  const ids = new Map<TreeNode, number>();
  return tree.sortedPaths().map((p) => {
    const n = tree.get(p)!;
    if (!ids.has(n)) ids.set(n, ids.size);
    return [p, ids.get(n), { ...n, xattrs: n.xattrs.map(([k, v]) => [k, Buffer.from(v).toString("hex")]) }];
  });
}

describe("image tree cache", () => {
  it("reads back the same tree: every node type, shared nodes, binary xattrs, times", async () => {
    await withTempDir(async (dir) => {
      const store = await ContentStore.open(join(dir, "store"));
      const key = sha256("a manifest");
      const tree = sampleTree();
      assert.equal(await readCachedTree(store, key), undefined, "nothing cached yet");
      await writeCachedTree(store, key, tree, treeDigest(tree));
      const back = await readCachedTree(store, key);
      assert.ok(back);
      assert.equal(back.treeDigest, treeDigest(tree));
      assert.equal(treeDigest(back.tree), treeDigest(tree));
      assert.deepEqual(describeTree(back.tree), describeTree(tree));
      assert.equal(back.tree.get("bin/a"), back.tree.get("bin/b"), "a hard link is one node");
      assert.equal(back.tree.get("bin/l1"), back.tree.get("bin/l2"), "so is a hard-linked symlink");
      assert.notEqual(back.tree.get("bin/a"), back.tree.get("bin/c"));
      // The tree is usable as any other: a later change keeps it consistent.
      back.tree.delete("dev");
      assert.equal(back.tree.has("dev/null"), false);
      assert.deepEqual(back.tree.children(""), new Set(["bin", "usr"]));
    });
  });

  it("refuses rows that are not a tree, with STORE_CORRUPT naming the row", async () => {
    await withTempDir(async (dir) => {
      const store = await ContentStore.open(join(dir, "store"));
      const tree = sampleTree();
      const keys = farmKeys(
        tree
          .sortedPaths()
          .map((p) => tree.get(p)!)
          .filter(farmHolds),
      );
      const data = (rows: { digest: Digest; size: number }) => ({
        kind: "rootstock image tree",
        version: 2,
        treeDigest: treeDigest(tree),
        inventory: summariseTree(tree),
        rows,
      });
      const good = JSON.parse(
        JSON.stringify(
          tree.sortedPaths().map((p, i) => {
            const n = tree.get(p)!;
            return [
              p,
              n.type,
              n.mode,
              n.uid,
              n.gid,
              n.mtime.sec,
              n.mtime.nsec,
              n.size,
              n.digest?.slice(7) ?? "",
              n.linkTarget ?? "",
              n.devmajor,
              n.devminor,
              [],
              i === 3 ? 2 : -1,
              keys.get(n) ?? "",
            ];
          }),
        ),
      );
      const cases: Array<[string, (rows: unknown[][]) => void]> = [
        ["out of order", (rows) => rows.reverse()],
        ["missing parent", (rows) => rows.splice(1, 1)],
        ["file without digest", (rows) => (rows[2]![8] = "")],
        ["unknown type", (rows) => (rows[2]![1] = "socket")],
        ["hard link to a later row", (rows) => (rows[3]![13] = 9)],
        ["hard link to a directory", (rows) => (rows[3]![13] = 1)],
        ["unsafe path", (rows) => (rows[2]![0] = "bin/../../etc")],
        ["mode out of range", (rows) => (rows[2]![2] = 0o170000)],
        ["short row", (rows) => rows[4]!.pop()],
        ["file without farm key", (rows) => (rows[2]![14] = "")],
        ["farm key on a directory", (rows) => (rows[1]![14] = rows[2]![14])],
        ["farm key not sha256 hex", (rows) => (rows[2]![14] = "../../etc/passwd")],
      ];
      for (const [name, mutate] of cases) {
        const rows = structuredClone(good) as unknown[][];
        mutate(rows);
        const blob = await store.putBlob(zstdCompress(Buffer.from(JSON.stringify(rows)), 3));
        const key = sha256(name) as Digest;
        await store.putMeta(key, { blobs: [blob.digest], data: data(blob) });
        await assert.rejects(readCachedTree(store, key), (e) => isRootstockError(e, "STORE_CORRUPT"), name);
      }
      // The unmutated rows do read back (the cases above fail for their mutation only).
      const blob = await store.putBlob(zstdCompress(Buffer.from(JSON.stringify(good)), 3));
      await store.putMeta(sha256("good"), { blobs: [blob.digest], data: data(blob) });
      assert.ok(await readCachedTree(store, sha256("good")));
      // A document without the inventory is refused as well.
      await store.putMeta(sha256("no inventory"), {
        blobs: [blob.digest],
        data: { ...data(blob), inventory: { files: -1 } },
      });
      await assert.rejects(readCachedTree(store, sha256("no inventory")), (e) =>
        isRootstockError(e, "STORE_CORRUPT"),
      );
    });
  });

  it("serves exports and digests of a store image from its second read on, with the same results", async () => {
    await withTempDir(async (dir) => {
      const storeDir = join(dir, "store");
      const dest = await openEndpoint(parseReference("store:deb:e"), { storeDir });
      const imported = await importTarball(await debianRootfsTar("essential"), dest, "e");
      await dest.close();
      const exportTo = async (format: "dir" | "tar", output: string, overlays: OverlaySpec[] = []) => {
        const source = await openEndpoint(parseReference("store:deb:e"), { storeDir });
        try {
          const store = await ContentStore.open(storeDir, { durability: "batch" });
          return await exportImage(source, store, { format, output, durable: false, overlays });
        } finally {
          await source.close();
        }
      };
      // The first export has an overlay: what it keeps is the image's tree, not its own.
      await writeFile(join(dir, "motd"), "farm\n");
      const overlaid = await exportTo("tar", join(dir, "0.tar"), [
        { source: join(dir, "motd"), dest: "/etc/motd" },
      ]);
      assert.notEqual(overlaid.treeDigest, imported.treeDigest);
      const first = await exportTo("tar", join(dir, "1.tar"));
      const second = await exportTo("tar", join(dir, "2.tar"));
      assert.deepEqual(
        [overlaid.treeFromCache, first.treeFromCache, second.treeFromCache],
        [false, true, true],
      );
      for (const r of [first, second]) assert.equal(r.treeDigest, imported.treeDigest);
      const again = await exportTo("tar", join(dir, "3.tar"), [
        { source: join(dir, "motd"), dest: "/etc/motd" },
      ]);
      assert.equal(again.treeFromCache, true);
      assert.equal(again.treeDigest, overlaid.treeDigest, "an overlay on a cached tree");
      const { readFile } = await import("node:fs/promises");
      assert.ok(
        (await readFile(join(dir, "2.tar"))).equals(await readFile(join(dir, "1.tar"))),
        "same tar bytes",
      );
      assert.ok(
        (await readFile(join(dir, "3.tar"))).equals(await readFile(join(dir, "0.tar"))),
        "with overlay too",
      );
      const d = await exportTo("dir", join(dir, "d"));
      assert.equal(d.treeFromCache, true);
      assert.equal((await digestPath(join(dir, "d"))).treeDigest, imported.treeDigest);
      const source = await openEndpoint(parseReference("store:deb:e"), { storeDir });
      const viaDigest = await digestImage(source, await ContentStore.open(storeDir));
      await source.close();
      assert.equal(viaDigest.treeDigest, imported.treeDigest);

      // A file object the store lost: every export form says STORE_CORRUPT, naming
      // the entry, and leaves no output behind.
      const store = await ContentStore.open(storeDir);
      const passwd = (await readCachedTree(store, viaDigest.image!.digest))!.tree.get("etc/passwd")!;
      await rm(store.filePath(passwd.digest!));
      const { pruneFarm } = await import("../../src/export/farm.js");
      await rm(join(dir, "d"), { recursive: true });
      pruneFarm(storeDir);
      for (const [format, extra] of [
        ["tar", {}],
        ["cpio", {}],
        ["dir", { copy: true }],
        ["dir", {}],
      ] as const) {
        const output = join(dir, `lost-${format}-${Object.keys(extra).length}`);
        const source = await openEndpoint(parseReference("store:deb:e"), { storeDir });
        await assert.rejects(
          exportImage(source, await ContentStore.open(storeDir), {
            format,
            output,
            durable: false,
            ...extra,
          }),
          (e) => isRootstockError(e, "STORE_CORRUPT") && /missing/.test(e.message),
          `${format} ${JSON.stringify(extra)}`,
        );
        await source.close();
        assert.deepEqual(
          (await readdir(dir)).filter((n) => n.startsWith("lost-")),
          [],
          "nothing left behind",
        );
      }
    });
  });
});
