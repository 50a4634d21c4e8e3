/**
 * Layers end to end on real directories: base → child diff written as layer tars,
 * unpacked again with OCI semantics (ours and umoci's) to exactly the child; layers
 * reproducible byte for byte; a Debian root filesystem through scan → layer → fromTar.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { readTar, readTarFile } from "../../src/tar/index.js";
import { treeDigest } from "../../src/tree/digest.js";
import { diff, type LayerEntry, layerEntryName, treeAsLayer } from "../../src/tree/layer.js";
import { scan } from "../../src/tree/scan.js";
import { directoryContent, fromTar, treeDigestOfTar, writeLayer } from "../../src/tree/tar.js";
import type { Tree } from "../../src/tree/tree.js";
import { debianRootfsDir, debianRootfsTar, hasCommand } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";
import { makeSampleTree, run } from "./sample.js";

let work: string;
let base: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "rootstock-tree-layer-"));
  base = join(work, "base");
  await makeSampleTree(base);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function writeLayerFile(
  entries: LayerEntry[],
  root: string,
  out: string,
  epoch?: number,
): Promise<string> {
  const hash = createHash("sha256");
  async function* hashed() {
    for await (const chunk of writeLayer(entries, directoryContent(root), { sourceDateEpoch: epoch })) {
      hash.update(chunk);
      yield chunk;
    }
  }
  await pipeline(Readable.from(hashed()), createWriteStream(out));
  return `sha256:${hash.digest("hex")}`;
}

async function fullLayerDigest(root: string, tree: Tree, epoch?: number): Promise<string> {
  return writeLayerFile(treeAsLayer(tree), root, "/dev/null", epoch);
}

describe("base → child layers", () => {
  it("unpacking the base layer and the child's diff layer gives exactly the child", async () => {
    await withTempDir(async (tmp) => {
      const child = join(tmp, "child");
      await run("cp", ["-a", base, child]);
      const sh = (script: string) => run("sh", ["-ec", script], { cwd: child });
      await sh("rm etc/hosts"); // a deleted file
      await sh("rm -r deep"); // a deleted directory tree: one whiteout at its top
      await sh("rm -r var/lib/empty && echo now-a-file > var/lib/empty"); // dir → file
      await sh("rm srv/owned && mkdir srv/owned && echo inside > srv/owned/f"); // file → dir
      await sh("echo patched >> bin/busybox"); // content change of a 3-name hard link group
      await sh("rm dev/null dev/loop0 dev/initctl && mknod dev/console c 5 1"); // wiped: opaque
      await sh("mkdir -p opt/new/dir && echo new > opt/new/dir/file && ln etc/empty etc/empty.link");
      await sh("chmod 0700 etc && touch -d '2020-01-01 00:00:00' etc");

      const lower = (await scan(base)).tree;
      const upper = (await scan(child)).tree;
      const layer = diff(lower, upper);
      const names = layer.map(layerEntryName);
      assert.ok(names.includes("etc/.wh.hosts"));
      assert.ok(names.includes(".wh.deep"));
      assert.ok(!names.some((n) => n.startsWith("deep/")), "nothing below a deleted directory");
      assert.ok(names.includes("dev/.wh..wh..opq"));
      assert.ok(!names.some((n) => n.startsWith("dev/.wh.") && n !== "dev/.wh..wh..opq"));
      assert.deepEqual(
        layer
          .filter((e) => e.kind === "hardlink")
          .map((e) => `${e.path}=>${e.kind === "hardlink" && e.target}`),
        ["bin/ls=>bin/busybox", "etc/empty.link=>etc/empty", "srv/shared/cat=>bin/busybox"],
      );
      assert.ok(!names.includes("etc/dangling") && !names.includes("bin/ping"), "unchanged entries stay out");

      const epoch = 2_000_000_000;
      const baseTar = join(tmp, "base.tar");
      const childTar = join(tmp, "child.tar");
      await writeLayerFile(treeAsLayer(lower), base, baseTar, epoch);
      await writeLayerFile(layer, child, childTar, epoch);
      // GNU tar reads our layers (an independent parser).
      const { stdout } = await run("tar", ["-tf", childTar]);
      assert.ok(stdout.split("\n").includes("dev/.wh..wh..opq"));

      const unpacked = await fromTar(readTarFile(childTar), { base: await fromTar(readTarFile(baseTar)) });
      assert.equal(treeDigest(unpacked), treeDigest(upper));
      assert.notEqual(treeDigest(lower), treeDigest(upper));

      if (await hasCommand("umoci")) {
        const rootfs = await umociUnpack(tmp, [baseTar, childTar]);
        assert.equal(
          treeDigest((await scan(rootfs)).tree),
          treeDigest(upper),
          "umoci unpack of the two layers",
        );
      }
    });
  });
});

/** An OCI layout with gzip layers (umoci 0.4.7 reads no zstd) unpacked by umoci; returns its rootfs. */
async function umociUnpack(tmp: string, layerTars: string[]): Promise<string> {
  const layout = join(tmp, "layout");
  await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
  const putBlob = async (bytes: Uint8Array) => {
    const hex = createHash("sha256").update(bytes).digest("hex");
    await writeFile(join(layout, "blobs", "sha256", hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  const layers = [];
  const diffIds = [];
  for (const tar of layerTars) {
    const raw = await readFile(tar);
    diffIds.push(`sha256:${createHash("sha256").update(raw).digest("hex")}`);
    layers.push({
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      ...(await putBlob(gzipSync(raw))),
    });
  }
  const config = await putBlob(
    Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: {},
        rootfs: { type: "layers", diff_ids: diffIds },
      }),
    ),
  );
  const manifest = await putBlob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers,
      }),
    ),
  );
  await writeFile(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await writeFile(
    join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: { "org.opencontainers.image.ref.name": "t" },
        },
      ],
    }),
  );
  const bundle = join(tmp, "bundle");
  await run("umoci", ["unpack", "--image", `${layout}:t`, bundle]);
  return join(bundle, "rootfs");
}

describe("podman", () => {
  it("podman export of an image imported from our layer has the tree digest of the directory", async (t) => {
    if (!(await hasCommand("podman"))) return t.skip("podman not installed");
    await withTempDir(async (tmp) => {
      const tree = (await scan(base)).tree;
      const layer = join(tmp, "layer.tar");
      await writeLayerFile(treeAsLayer(tree), base, layer, 1_700_000_000);
      // A private store: nothing touches the machine's podman storage, no network.
      const podman = (...args: string[]) =>
        run("podman", [
          "--root",
          join(tmp, "storage"),
          "--runroot",
          join(tmp, "run"),
          "--storage-driver",
          "vfs",
          ...args,
        ]);
      await podman("import", layer, "localhost/rootstock-tree-test");
      const { stdout } = await podman("create", "localhost/rootstock-tree-test", "true");
      const exported = join(tmp, "export.tar");
      await podman("export", "-o", exported, stdout.trim());
      await podman("rm", stdout.trim());
      // Our layer clamps mtimes to 1_700_000_000; the sample's are all older.
      assert.equal(treeDigest(await fromTar(readTarFile(exported))), treeDigest(tree));
    });
  });
});

describe("reproducible layers", () => {
  it("same tree → same bytes: scanned twice, and a cp -a copy elsewhere; a no-op rebuild is empty", async () => {
    await withTempDir(async (tmp) => {
      const first = (await scan(base)).tree;
      const second = (await scan(base)).tree;
      const copy = join(tmp, "elsewhere", "copy");
      await mkdir(join(tmp, "elsewhere"));
      await run("cp", ["-a", base, copy]);
      const copied = (await scan(copy)).tree;
      const d1 = await fullLayerDigest(base, first, 1_700_000_000);
      assert.equal(await fullLayerDigest(base, second, 1_700_000_000), d1);
      assert.equal(await fullLayerDigest(copy, copied, 1_700_000_000), d1);
      assert.deepEqual(diff(first, copied), [], "rebuilding the same tree stores nothing new");
      // Hashing while writing (each file read once) gives the same layer and fills the digests.
      const unhashed = (await scan(base, { hash: false })).tree;
      assert.equal(unhashed.get("bin/ping")!.digest, undefined);
      assert.equal(await fullLayerDigest(base, unhashed, 1_700_000_000), d1);
      assert.equal(treeDigest(unhashed), treeDigest(first));
      assert.notEqual(
        await fullLayerDigest(base, first, 1_500_000_000),
        d1,
        "another epoch clamps differently",
      );
    });
  });

  it("clamps mtimes to SOURCE_DATE_EPOCH, writes numeric ids only, no atime/ctime, and refuses changed files", async () => {
    await withTempDir(async (tmp) => {
      const tree = (await scan(base)).tree;
      const epoch = 1_550_000_000; // 2019-02-12: after etc's mtime, before bin/sh's
      const out = join(tmp, "layer.tar");
      await writeLayerFile(treeAsLayer(tree), base, out, epoch);
      const byName = new Map<
        string,
        { sec: number; uname: string; atime?: unknown; ctime?: unknown; xattrs: number }
      >();
      for await (const { header } of readTarFile(out)) {
        byName.set(header.name, {
          sec: header.mtime.sec,
          uname: header.uname + header.gname,
          atime: header.atime,
          ctime: header.ctime,
          xattrs: header.xattrs.length,
        });
      }
      assert.equal(byName.get("bin/sh")!.sec, epoch);
      assert.equal(byName.get("etc/")!.sec, 1_546_300_800);
      assert.equal(byName.get("etc/hosts")!.sec, epoch); // 2020 → clamped
      for (const [name, h] of byName) {
        assert.ok(h.sec <= epoch, `${name} mtime clamped`);
        assert.equal(h.uname, "", `${name} has no user/group names`);
        assert.equal(h.atime ?? h.ctime, undefined, `${name} has no atime/ctime`);
      }
      assert.equal(byName.get("bin/ping")!.xattrs, 1, "security.capability kept");

      // A file changed after the scan fails the layer instead of slipping in.
      const copy = join(tmp, "copy");
      await run("cp", ["-a", base, copy]);
      const scanned = (await scan(copy)).tree;
      await writeFile(join(copy, "etc/hosts"), "127.0.0.9 changed\n"); // same length
      await assert.rejects(fullLayerDigest(copy, scanned), /changed since it was scanned/);
    });
  });
});

describe("a Debian root filesystem (essential)", () => {
  it("has one tree digest as mmdebstrap's tar, as the extracted directory, and through our layer", async () => {
    const dir = await debianRootfsDir("essential");
    const { tree } = await scan(dir);
    const digest = treeDigest(tree);
    assert.equal(await treeDigestOfTar(readTarFile(await debianRootfsTar("essential"))), digest);
    const layer = writeLayer(treeAsLayer(tree), directoryContent(dir), { sourceDateEpoch: 1_700_000_000 });
    assert.equal(treeDigest(await fromTar(readTar(layer))), digest);
  });
});
