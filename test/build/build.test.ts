/**
 * rootstock build end to end on small graphs made here (the Mesa example takes
 * minutes: it runs in the bench). Real producers (tar, chroot, mmdebstrap, apt from
 * Debian's archive), real store, real layers.
 */
import assert from "node:assert/strict";
import { copyFile, link, readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { expirePreMerge, promote } from "../../src/build/channels.js";
import { type Destination, LATEST_TAG, parseDestination, readImage } from "../../src/build/destination.js";
import { loadGraph } from "../../src/build/graph.js";
import { produceImport } from "../../src/build/producers/import.js";
import { produceScript } from "../../src/build/producers/script.js";
import { clampTreeTimes, makeReproducible, unpackImage } from "../../src/build/rootfs.js";
import { type BuildReport, buildImages, DEFAULT_SOURCE_DATE_EPOCH, planBuild } from "../../src/build/run.js";
import { INPUTS_LABEL, parseInputRecord } from "../../src/build/tags.js";
import { ContentStore } from "../../src/cas/store.js";
import { decodeLayer } from "../../src/compress/layer.js";
import { readTar } from "../../src/tar/index.js";
import { sameNode, scan, type Tree, treeDigest } from "../../src/tree/index.js";
import { debianRootfsTar, FIXTURE_DIR } from "../helpers/fixtures.js";
import { withTempDir } from "../helpers/tmp.js";

const isRoot = process.getuid?.() === 0;

async function blobBytes(storeDir: string): Promise<number> {
  const dir = join(storeDir, "blobs", "sha256");
  let total = 0;
  for (const name of await readdir(dir).catch(() => [] as string[]))
    total += (await stat(join(dir, name))).size;
  return total;
}

async function build(dir: string, storeDir: string, channel: "pre-merge" | "post-merge" = "post-merge") {
  const file = join(dir, "images.yaml");
  const graph = loadGraph(await readFile(file, "utf8"), file);
  const destination = parseDestination("store:", { storeDir });
  const report = await buildImages({
    graph,
    baseDir: dir,
    destination,
    channel,
    workRoot: join(storeDir, "work"),
    debCache: join(FIXTURE_DIR, "debs"),
    version: "test",
  });
  return { report, graph, destination };
}

/** Paths whose nodes differ (as the tree digest sees them), for a readable failure. */
function treeDifferences(a: Tree, b: Tree): string[] {
  const out: string[] = [];
  for (const path of new Set([...a.sortedPaths(), ...b.sortedPaths()])) {
    if (path === "") continue;
    const x = a.get(path);
    const y = b.get(path);
    if (!x || !y) out.push(`${path}: ${x ? "only unpacked" : "only expected"}`);
    else if (x.type !== "symlink" && !sameNode({ ...x, xattrs: [] }, { ...y, xattrs: [] })) {
      out.push(
        `${path}: ${JSON.stringify({ ...x, xattrs: undefined })} != ${JSON.stringify({ ...y, xattrs: undefined })}`,
      );
    }
  }
  return out.slice(0, 10);
}

const byId = (r: BuildReport, id: string) => r.images.find((i) => i.id === id)!;

async function layerNames(storeDir: string, dest: Destination, repository: string, tag: string) {
  const store = await ContentStore.open(storeDir);
  const { manifest, config } = await readImage(dest, repository, tag);
  const top = manifest.layers.at(-1)!;
  const names: string[] = [];
  const tar = decodeLayer(
    await store.openBlob({ digest: top.digest, size: top.size }),
    top,
    config.rootfs.diff_ids.at(-1) as `sha256:${string}`,
  );
  for await (const e of readTar(tar)) names.push(e.header.name);
  return names;
}

const CHILD_RUN = [
  "rm /etc/debian_version",
  "rm -r /usr/share/doc/bash",
  "echo hi > /etc/hi && chmod 0600 /etc/hi && ln /etc/hi /etc/hi-link",
  "mkdir -p /opt/app && printf x > /opt/app/file",
];

describe("build: tarball base → script child", { skip: !isRoot && "needs root (chroot)" }, () => {
  it("child layer = diff with whiteouts; unpacked layers equal the child's directory; rebuilds store nothing", async () => {
    await withTempDir(async (dir) => {
      const tar = await debianRootfsTar("essential");
      await link(tar, join(dir, "base.tar")).catch(() => copyFile(tar, join(dir, "base.tar")));
      await writeFile(
        join(dir, "images.yaml"),
        [
          "version: 1",
          "images:",
          "  base:",
          "    from: tarball:base.tar",
          "  child:",
          "    from: base",
          "    run:",
          ...CHILD_RUN.map((c) => `      - ${JSON.stringify(c)}`),
          "    labels: { purpose: test }",
          "",
        ].join("\n"),
      );
      const storeDir = join(dir, "store");
      const first = await build(dir, storeDir);
      assert.deepEqual(
        first.report.images.map((i) => i.action),
        ["build", "build"],
      );
      const child = byId(first.report, "child@x86_64");

      // the child's layer: only what the run changed, deletions as whiteouts
      const names = await layerNames(storeDir, first.destination, child.repository, child.targetTag);
      assert.ok(names.includes("etc/.wh.debian_version"), names.join(" "));
      assert.ok(names.includes("usr/share/doc/.wh.bash"));
      assert.ok(!names.some((n) => n.startsWith("usr/share/doc/bash/")));
      assert.ok(names.includes("etc/hi") && names.includes("etc/hi-link") && names.includes("opt/app/file"));
      assert.ok(names.length < 20, `small layer, got ${names.length} entries`);
      assert.ok(!names.some((n) => n.startsWith("bin/") || n.startsWith("usr/lib/")));

      // config: provenance labels, parent's layers first
      const img = await readImage(first.destination, child.repository, child.targetTag);
      const labels = img.config.config?.Labels ?? {};
      assert.equal(labels.purpose, "test");
      assert.equal(parseInputRecord(labels[INPUTS_LABEL])?.image, "child@x86_64");
      assert.equal(labels["dev.rootstock.parent"], byId(first.report, "base@x86_64").digest);
      assert.equal(labels["dev.rootstock.version"], "test");
      assert.equal(img.manifest.layers.length, 2);
      assert.match(
        img.manifest.layers[1]!.annotations?.["io.github.containers.zstd-chunked.manifest-checksum"] ?? "",
        /^sha256:/,
      );

      // unpacking base + child layers gives the child's directory (tree digest), made independently here
      const expected = join(dir, "expected");
      await produceImport({
        source: { transport: "tarball", path: "base.tar" },
        baseDir: dir,
        target: expected,
      });
      await produceScript({
        rootfs: expected,
        step: { packages: [], files: [], scripts: [], run: CHILD_RUN, env: {} },
        baseDir: dir,
        sourceDateEpoch: DEFAULT_SOURCE_DATE_EPOCH,
      });
      await makeReproducible(expected, DEFAULT_SOURCE_DATE_EPOCH);
      const expectedTree = (await scan(expected)).tree;
      clampTreeTimes(expectedTree, DEFAULT_SOURCE_DATE_EPOCH);
      const unpacked = join(dir, "unpacked");
      const ep = await first.destination.open(child.repository, child.targetTag);
      await unpackImage(ep, await ep.resolveRoot(), unpacked);
      const unpackedTree = (await scan(unpacked)).tree;
      assert.equal(unpackedTree.get("etc/debian_version"), undefined);
      assert.equal(unpackedTree.get("usr/share/doc/bash"), undefined);
      assert.deepEqual(treeDifferences(unpackedTree, expectedTree), []);
      assert.equal(treeDigest(unpackedTree), treeDigest(expectedTree));

      // a second run builds nothing and stores nothing
      const before = await blobBytes(storeDir);
      const second = await build(dir, storeDir);
      assert.deepEqual(
        second.report.images.map((i) => i.action),
        ["keep", "keep"],
      );
      assert.equal(await blobBytes(storeDir), before);

      // another day, another store: the same digests for every layer, config and manifest
      const other = await build(dir, join(dir, "store2"));
      for (const id of ["base@x86_64", "child@x86_64"]) {
        assert.deepEqual(byId(other.report, id).layer?.digest, byId(first.report, id).layer?.digest);
        assert.equal(byId(other.report, id).digest, byId(first.report, id).digest);
      }
      assert.equal((await readdir(join(storeDir, "work"))).length, 0, "work directory cleaned");
    });
  });

  it("pre-merge builds get pre- tags; promote re-tags the same manifest; gc --keep-pre-merge expires old ones", async () => {
    await withTempDir(async (dir) => {
      const tar = await debianRootfsTar("essential");
      await link(tar, join(dir, "base.tar")).catch(() => copyFile(tar, join(dir, "base.tar")));
      await writeFile(join(dir, "images.yaml"), "version: 1\nimages:\n  base:\n    from: tarball:base.tar\n");
      const storeDir = join(dir, "store");
      const pre = await build(dir, storeDir, "pre-merge");
      const base = byId(pre.report, "base@x86_64");
      assert.equal(base.targetTag, `pre-${base.tag}`);
      const store = await ContentStore.open(storeDir);
      assert.deepEqual(
        (await store.listRefs(base.repository)).map((r) => r.tag),
        [base.targetTag],
      );
      // a pre-merge re-run keeps it; a post-merge plan promotes it
      assert.equal(byId((await build(dir, storeDir, "pre-merge")).report, "base@x86_64").action, "keep");
      const plan = await planBuild(pre.graph, dir, pre.destination, "post-merge");
      assert.equal(plan.images[0]!.action, "promote");

      const blobs = await blobBytes(storeDir);
      const [promoted] = await promote(
        [{ repository: base.repository, tag: base.targetTag }],
        pre.destination,
      );
      assert.equal(promoted!.digest, base.digest);
      assert.deepEqual(
        (await store.listRefs(base.repository)).map((r) => r.tag).sort(),
        [base.tag, LATEST_TAG, base.targetTag].sort(),
      );
      assert.equal(await blobBytes(storeDir), blobs, "promotion copies no blob");

      // expiry: only pre-merge tags older than the limit go
      const day = 86_400_000;
      const refFile = join(storeDir, "refs", encodeURIComponent(base.repository), base.targetTag);
      assert.deepEqual(await expirePreMerge(store, 14 * day), []);
      const old = new Date(Date.now() - 15 * day);
      await utimes(refFile, old, old);
      for (const tag of [base.tag, LATEST_TAG]) {
        const f = join(storeDir, "refs", encodeURIComponent(base.repository), tag);
        await utimes(f, old, old);
      }
      const expired = await expirePreMerge(store, 14 * day);
      assert.deepEqual(
        expired.map((e) => e.tag),
        [base.targetTag],
      );
      assert.deepEqual(
        (await store.listRefs(base.repository)).map((r) => r.tag).sort(),
        [base.tag, LATEST_TAG].sort(),
      );
    });
  });
});

describe("build: mmdebstrap base → apt child (Debian archive)", { skip: !isRoot && "needs root" }, () => {
  it("reproducible rebuild, one package added rebuilds one image, plan names a shared list's users", async () => {
    await withTempDir(async (dir) => {
      const write = (appPackages: string[], extra: string[]) =>
        writeFile(
          join(dir, "images.yaml"),
          [
            "version: 1",
            "package-lists:",
            `  extra: [${extra.join(", ")}]`,
            "images:",
            "  base:",
            "    mmdebstrap: { suite: bookworm, variant: apt }",
            "    package-lists: [extra]",
            "  app:",
            "    from: base",
            `    packages: [${appPackages.join(", ")}]`,
            "",
          ].join("\n"),
        );
      await write(["tree"], ["hello"]);
      const storeDir = join(dir, "store");
      const first = await build(dir, storeDir);
      const app = byId(first.report, "app@x86_64");
      assert.deepEqual(
        first.report.images.map((i) => i.action),
        ["build", "build"],
      );

      // the same inputs built again later (tag removed first): the same layer, nothing new stored
      const store = await ContentStore.open(storeDir);
      await store.deleteRef(app.repository, app.tag);
      const blobs = await blobBytes(storeDir);
      const again = await build(dir, storeDir);
      assert.deepEqual(
        again.report.images.map((i) => i.action),
        ["keep", "build"],
      );
      assert.equal(byId(again.report, "app@x86_64").layer?.digest, app.layer?.digest);
      assert.equal(byId(again.report, "app@x86_64").layer?.existed, true);
      assert.equal(byId(again.report, "app@x86_64").digest, app.digest);
      assert.equal(await blobBytes(storeDir), blobs);

      // one more package in app: app alone is rebuilt, the store grows by about its files
      await write(["tree", "pv"], ["hello"]);
      const plan = await planBuild(first.graph, dir, first.destination, "post-merge");
      const file = join(dir, "images.yaml");
      const edited = loadGraph(await readFile(file, "utf8"), file);
      const editedPlan = await planBuild(edited, dir, first.destination, "post-merge");
      assert.equal(plan.images[1]!.action, "keep");
      assert.deepEqual(
        editedPlan.images.map((i) => [i.id, i.action, i.reasons]),
        [
          ["base@x86_64", "keep", []],
          ["app@x86_64", "build", ["field packages changed"]],
        ],
      );
      const grown = await build(dir, storeDir);
      assert.deepEqual(
        grown.report.images.map((i) => i.action),
        ["keep", "build"],
      );
      const growth = (await blobBytes(storeDir)) - blobs;
      const names = await layerNames(storeDir, grown.destination, app.repository, LATEST_TAG);
      assert.ok(names.includes("usr/bin/pv") && names.includes("usr/bin/tree"));
      // pv's .deb is ~70 kB; the layer also carries dpkg's database and tree's files
      assert.ok(growth > 0 && growth < 1_500_000, `store grew ${growth} bytes`);

      // a shared list edited: plan names every image it reaches and the input
      await write(["tree", "pv"], ["hello", "dos2unix"]);
      const listed = loadGraph(await readFile(file, "utf8"), file);
      const listPlan = await planBuild(listed, dir, first.destination, "post-merge");
      assert.deepEqual(
        listPlan.images.map((i) => [i.id, i.action, i.reasons]),
        [
          ["base@x86_64", "build", ['package list "extra" changed']],
          ["app@x86_64", "build", ["parent base changed"]],
        ],
      );
    });
  });
});
