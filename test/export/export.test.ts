/**
 * `rootstock export` and `rootstock digest` end to end on real images: the Debian
 * essential rootfs imported into a temporary store, exported to every format, each
 * export's tree digest equal to the image's (and checked by GNU tar / zstd where an
 * independent reader exists); a two-layer image with whiteouts and an opaque
 * directory; overlays; the --force and output rules through the real CLI.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import {
  chmod,
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { ContentStore } from "../../src/cas/store.js";
import { encodeLayer } from "../../src/compress/layer.js";
import { digestImage, digestPath } from "../../src/export/digest.js";
import { type ExportFormat, exportImage } from "../../src/export/export.js";
import { pruneFarm } from "../../src/export/farm.js";
import { assembleImage, hostPlatform, writeImage } from "../../src/image/assemble.js";
import { copyImage } from "../../src/image/copy.js";
import { type Endpoint, openEndpoint } from "../../src/image/endpoint.js";
import { importTarball } from "../../src/image/import.js";
import { parseReference } from "../../src/oci/reference.js";
import { diff, directoryContent, scan, treeAsLayer, treeDigest, writeLayer } from "../../src/tree/index.js";
import { rootstock } from "../helpers/cli.js";
import { debianRootfsTar, hasCommand } from "../helpers/fixtures.js";
import { podmanSandbox } from "../helpers/podman.js";

const run = promisify(execFile);

let work: string;
let storeDir: string;
let imageDigest: string;

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

async function endpoint(ref: string): Promise<Endpoint> {
  return openEndpoint(parseReference(ref), { storeDir });
}

async function exportTo(ref: string, format: ExportFormat, output: string, extra = {}) {
  const source = await endpoint(ref);
  try {
    const store = await ContentStore.open(storeDir, { durability: "batch" });
    return await exportImage(source, store, { format, output, durable: false, ...extra });
  } finally {
    await source.close();
  }
}

before(async () => {
  work = await (await import("node:fs/promises")).mkdtemp("/var/tmp/rootstock-export-test-");
  storeDir = join(work, "store");
  const dest = await endpoint("store:deb:essential");
  const summary = await importTarball(await debianRootfsTar("essential"), dest, "essential");
  imageDigest = summary.treeDigest;
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

test("digest is equal for the image and its dir (hardlink, copy), tar, tar.zst, cpio and cpio.zst exports", async () => {
  const store = await ContentStore.open(storeDir);
  const source = await endpoint("store:deb:essential");
  const fromImage = await digestImage(source, store);
  assert.equal(fromImage.treeDigest, imageDigest);
  assert.deepEqual(
    fromImage.image?.layers.map((l) => l.via),
    ["toc"],
    "a zstd:chunked layer is digested from its TOC, no file read",
  );

  const first = await exportTo("store:deb:essential", "dir", join(work, "dir-h"));
  assert.equal(first.treeDigest, imageDigest);
  assert.equal(first.dir?.copied, 0, "every file with content hardlinked from the farm");
  assert.ok((first.dir?.linked ?? 0) > 4000);
  assert.equal((await digestPath(join(work, "dir-h"))).treeDigest, imageDigest, "hardlink dir");
  // A second export reuses every farm object and adds no hard links the image lacks.
  const second = await exportTo("store:deb:essential", "dir", join(work, "dir-h2"));
  assert.equal(first.dir?.cachedCheckout, false, "the first export makes the farm objects");
  assert.equal(second.dir?.cachedCheckout, true, "the second is written from the cached tree");
  assert.equal(second.dir?.farm.made, 0);
  assert.equal(second.explodedLayers, 0);
  assert.deepEqual(
    second.layers.map((l) => l.via),
    ["record"],
    "the first export exploded the layer: later ones read its record",
  );
  assert.equal((await digestPath(join(work, "dir-h2"))).treeDigest, imageDigest, "second hardlink dir");
  const passwd = await stat(join(work, "dir-h2", "etc/passwd"));
  assert.ok(passwd.nlink >= 3, "farm object shared by both exports");

  const copied = await exportTo("store:deb:essential", "dir", join(work, "dir-c"), { copy: true });
  assert.equal(copied.dir?.linked, 0);
  assert.equal((await stat(join(work, "dir-c", "etc/passwd"))).nlink, 1);
  assert.equal((await digestPath(join(work, "dir-c"))).treeDigest, imageDigest, "copied dir");

  for (const format of ["tar", "tar.zst", "cpio", "cpio.zst"] as const) {
    const out = join(work, `rootfs.${format}`);
    const r = await exportTo("store:deb:essential", format, out);
    assert.equal(r.bytes, (await stat(out)).size);
    const d = await digestPath(out);
    assert.equal(d.treeDigest, imageDigest, format);
    assert.equal(d.kind, format.replace(".zst", "+zstd"));
  }

  // Independent readers: GNU tar extracts the tar export to the same tree; zstd -d gives the same tar.
  const gnu = join(work, "gnu-x");
  await mkdir(gnu);
  await run("tar", [
    "-x",
    "-p",
    "--numeric-owner",
    "--xattrs",
    "--xattrs-include=*",
    "-f",
    join(work, "rootfs.tar"),
    "-C",
    gnu,
  ]);
  assert.equal((await digestPath(gnu)).treeDigest, imageDigest, "tar export extracted by GNU tar");
  await run("zstd", ["-q", "-d", join(work, "rootfs.tar.zst"), "-o", join(work, "unzstd.tar")]);
  assert.equal(await sha256File(join(work, "unzstd.tar")), await sha256File(join(work, "rootfs.tar")));
  await rm(gnu, { recursive: true, force: true });
  for (const d of ["dir-c", "dir-h", "dir-h2"]) await rm(join(work, d), { recursive: true, force: true });
});

test("the farm is a cache: pruning removes objects no export links, a later export remakes them", async () => {
  // Order-independent: other tests' exports may link the same farm objects, so count
  // only the objects this test's own export is the sole user of.
  const own = join(work, "dir-prune");
  await exportTo("store:deb:essential", "dir", own);
  const linksInExport = new Map<bigint, { nlink: bigint; paths: number }>();
  for (const e of await readdir(own, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const st = await stat(join(e.parentPath, e.name), { bigint: true });
    const seen = linksInExport.get(st.ino);
    linksInExport.set(st.ino, { nlink: st.nlink, paths: (seen?.paths ?? 0) + 1 });
  }
  // Files with content are farm links (nlink above the export's own paths); empty files are not.
  const farmLinked = [...linksInExport.values()].filter((l) => l.nlink > BigInt(l.paths)).length;
  // Objects linked by this export and the farm only.
  const solelyOurs = [...linksInExport.values()].filter((l) => l.nlink === BigInt(l.paths + 1)).length;
  assert.ok(solelyOurs > 0, "some farm objects are linked by this export only");
  const kept = pruneFarm(storeDir);
  assert.ok(kept.kept >= farmLinked, "objects linked by an export stay");
  await rm(own, { recursive: true, force: true });
  const dry = pruneFarm(storeDir, { dryRun: true });
  assert.ok(dry.removed >= solelyOurs && dry.bytes > 0, "a dry run counts them");
  assert.equal(pruneFarm(storeDir, { dryRun: true }).removed, dry.removed, "and removes nothing");
  // `store du` shows the farm: its objects on disk, and those gc would remove.
  const du = async () => {
    const out = await rootstock(["--store", storeDir, "--json", "store", "du"]);
    assert.equal(out.code, 0, out.stderr);
    return JSON.parse(out.stdout).farm as {
      count: number;
      bytes: number;
      unlinked: number;
      unlinkedBytes: number;
    };
  };
  const before = await du();
  assert.equal(before.unlinked, dry.removed);
  assert.equal(before.unlinkedBytes, dry.bytes);
  assert.ok(before.count >= dry.removed && before.bytes >= dry.bytes);
  // `store gc` prunes the farm too (every image here has a ref: nothing else goes).
  const gc = await rootstock(["--store", storeDir, "--json", "store", "gc"]);
  assert.equal(gc.code, 0, gc.stderr);
  const pruned = JSON.parse(gc.stdout).farm as { removed: number };
  assert.ok(pruned.removed >= solelyOurs, `${pruned.removed} removed, ${solelyOurs} were only ours`);
  assert.equal(pruneFarm(storeDir).removed, 0, "a second prune finds nothing");
  const after = await du();
  assert.equal(after.unlinked, 0);
  assert.equal(after.count, before.count - pruned.removed);
  const again = await exportTo("store:deb:essential", "dir", own);
  assert.ok((again.dir?.farm.made ?? 0) >= solelyOurs, "the pruned objects are made again");
  assert.equal((await digestPath(own)).treeDigest, imageDigest);
  await rm(own, { recursive: true, force: true });
});

test("two exports making the same farm objects at once both succeed, and leave nothing behind", async () => {
  // Without a farm, each makes every object: copies in the pool interleave, and each
  // renames its objects over the other's (equal ones; an export keeps what it linked).
  await rm(join(storeDir, "farm"), { recursive: true, force: true });
  const [a, b] = [join(work, "dir-race-a"), join(work, "dir-race-b")];
  const [ra, rb] = await Promise.all([
    exportTo("store:deb:essential", "dir", a),
    exportTo("store:deb:essential", "dir", b),
  ]);
  assert.ok((ra.dir?.farm.made ?? 0) > 0 && (rb.dir?.farm.made ?? 0) > 0, "both made objects");
  assert.equal((await digestPath(a)).treeDigest, imageDigest);
  assert.equal((await digestPath(b)).treeDigest, imageDigest);
  assert.deepEqual(await readdir(join(storeDir, "farm", "tmp")), [], "no temporary objects left");
  // A third export finds every object made: it makes none.
  const c = join(work, "dir-race-c");
  const rc = await exportTo("store:deb:essential", "dir", c);
  assert.equal(rc.dir?.farm.made, 0);
  assert.equal((await digestPath(c)).treeDigest, imageDigest);
  for (const d of [a, b, c]) await rm(d, { recursive: true, force: true });
});

test("a farm object changed through an export (chmod, touch, chown) is dropped and made again", async () => {
  const first = join(work, "dir-tamper");
  await exportTo("store:deb:essential", "dir", first);
  // Device nodes come from the farm too (as root): the next export links the same inode.
  const root = process.getuid?.() === 0;
  const before = await exportTo("store:deb:essential", "dir", join(work, "dir-tamper1"));
  assert.equal(before.dir?.farm.made, 0);
  const nullDev = await lstat(join(work, "dir-tamper1", "dev/null"));
  assert.ok(nullDev.isCharacterDevice());
  if (root)
    assert.equal(nullDev.ino, (await lstat(join(first, "dev/null"))).ino, "device linked from the farm");
  // Writing metadata through a hardlinked export writes the shared farm object.
  await chmod(join(first, "etc/passwd"), 0o600);
  await utimes(join(first, "etc/group"), 1, 1);
  await (await import("node:fs/promises")).chown(join(first, "etc/hostname"), 1234, 1234);
  if (root) await chmod(join(first, "dev/null"), 0o600);
  const again = join(work, "dir-tamper2");
  const r = await exportTo("store:deb:essential", "dir", again);
  assert.equal(before.dir?.cachedCheckout, true);
  assert.equal(r.dir?.cachedCheckout, false, "a changed object sends the export down the general path");
  assert.equal(r.dir?.farm.made, root ? 4 : 3, "the changed objects are made again");
  assert.equal((await digestPath(again)).treeDigest, imageDigest);
  const passwd = await stat(join(again, "etc/passwd"));
  assert.equal(passwd.mode & 0o7777, 0o644);
  assert.notEqual(passwd.ino, (await stat(join(first, "etc/passwd"))).ino, "not the changed inode");
  if (root) assert.equal((await lstat(join(again, "dev/null"))).mode & 0o7777, 0o666);
  for (const d of [first, join(work, "dir-tamper1"), again]) await rm(d, { recursive: true, force: true });
});

test("podman export of the same image has the image's tree digest (podman adds nothing to a created container)", async (t) => {
  if (!(await hasCommand("podman"))) {
    t.skip("podman is not installed");
    return;
  }
  // Lowercase: podman names an image pulled from oci:PATH after the path.
  const dir = `/var/tmp/rootstock-podman-${createHash("sha256").update(work).digest("hex").slice(0, 12)}`;
  await mkdir(dir);
  const layout = join(dir, "layout");
  const src = await endpoint("store:deb:essential");
  const dst = await openEndpoint(parseReference(`oci:${layout}:deb`), { storeDir, create: true });
  await copyImage(src, dst, "deb");
  await src.close();
  await dst.close();
  // peers.md: private mount namespace, no network, lower ulimits; a private vfs storage.
  const { run: podman } = await podmanSandbox({ dir, driver: "vfs" });
  try {
    // podman 4.3 pulls an OCI layout directly (`oci:PATH:TAG`), zstd:chunked layer included.
    const id = (await podman("pull", "-q", `oci:${layout}:deb`)).stdout.trim().split("\n").pop()!;
    const container = (await podman("create", id, "true")).stdout.trim();
    const out = join(dir, "podman.tar");
    await podman("export", "-o", out, container);
    await podman("rm", container);
    // Same tree: no /etc/hostname, /etc/resolv.conf or /run/.containerenv in the export
    // (podman bind-mounts those into a running container; a created one has none).
    assert.equal((await digestPath(out)).treeDigest, imageDigest);
  } finally {
    await podman("system", "reset", "-f").catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
});

test("tar export is reproducible: the same image gives the same bytes, to a file and to stdout", async () => {
  const a = join(work, "rootfs.tar");
  if (!existsSync(a)) await exportTo("store:deb:essential", "tar", a);
  const b = join(work, "again.tar");
  await exportTo("store:deb:essential", "tar", b);
  assert.equal(await sha256File(a), await sha256File(b));
  // Through the CLI to stdout (-o -), as a pipe.
  const viaStdout = join(work, "stdout.tar");
  await run("sh", [
    "-c",
    `node bin/rootstock.js --store ${storeDir} -q export store:deb:essential --format tar -o - > ${viaStdout}`,
  ]);
  assert.equal(await sha256File(viaStdout), await sha256File(a));
  const listing = (await run("tar", ["-tvf", a], { maxBuffer: 64 << 20 })).stdout;
  assert.match(listing, /^-rw-r--r-- 0\/0 .* etc\/passwd$/m, "numeric owners, no names");
  await rm(b);
  await rm(viaStdout);
});

test("a two-layer image: whiteouts and an opaque directory are applied in every export", async () => {
  const lower = join(work, "lower");
  const upper = join(work, "upper");
  for (const root of [lower, upper]) {
    await mkdir(join(root, "etc"), { recursive: true });
    await mkdir(join(root, "opt/dir"), { recursive: true });
    await mkdir(join(root, "usr/bin"), { recursive: true });
    await writeFile(join(root, "etc/keep"), "kept\n");
    await writeFile(join(root, "usr/bin/tool"), "#!/bin/sh\necho tool\n");
    await chmod(join(root, "usr/bin/tool"), 0o4755);
    await link(join(root, "usr/bin/tool"), join(root, "usr/bin/tool-alias"));
    await symlink("../etc/keep", join(root, "usr/keep-link"));
  }
  await writeFile(join(lower, "etc/gone"), "deleted by the child\n");
  await mkdir(join(lower, "var/old"), { recursive: true });
  await writeFile(join(lower, "var/old/a"), "a\n");
  await writeFile(join(lower, "var/old/b"), "b\n");
  await writeFile(join(lower, "opt/dir/x"), "x\n");
  await writeFile(join(lower, "opt/dir/y"), "y\n");
  await mkdir(join(lower, "opt/dir/sub"));
  await writeFile(join(lower, "opt/dir/sub/z"), "z\n");
  await mkdir(join(upper, "var"));
  await writeFile(join(upper, "opt/dir/new"), "only in the child\n");
  await writeFile(join(upper, "etc/keep"), "changed by the child\n");
  for (const root of [lower, upper]) await utimes(join(root, "etc/keep"), 1_700_000_000, 1_700_000_000);

  const lowerTree = (await scan(lower)).tree;
  const upperTree = (await scan(upper)).tree;
  const childEntries = diff(lowerTree, upperTree);
  const kinds = childEntries.map((e) => `${e.kind}:${e.path}`);
  assert.ok(kinds.includes("whiteout:etc/gone"), kinds.join(" "));
  assert.ok(kinds.includes("opaque:opt/dir"), kinds.join(" "));

  const dest = await endpoint("store:two:layers");
  const put = async (tar: AsyncIterable<Uint8Array>, compression: "zstd:chunked" | "gzip") => {
    const { blob, result } = encodeLayer(tar, { compression });
    await dest.put(blob);
    return result;
  };
  const base = await put(writeLayer(treeAsLayer(lowerTree), directoryContent(lower)), "zstd:chunked");
  const child = await put(writeLayer(childEntries, directoryContent(upper)), "gzip");
  await writeImage(dest, assembleImage({ platform: hostPlatform(), layers: [base, child] }), "layers");

  const want = treeDigest(upperTree);
  const store = await ContentStore.open(storeDir);
  const d = await digestImage(dest, store);
  assert.equal(d.treeDigest, want);
  assert.deepEqual(
    d.image?.layers.map((l) => l.via),
    ["toc", "blob"],
  );
  for (const format of ["dir", "tar", "cpio.zst"] as const) {
    const out = join(work, `two-${format}`);
    const r = await exportTo("store:two:layers", format, out);
    assert.equal(r.treeDigest, want, format);
    assert.equal((await digestPath(out)).treeDigest, want, `${format} digest`);
  }
  const dir = join(work, "two-dir");
  assert.ok(!existsSync(join(dir, "etc/gone")), "whiteout applied");
  assert.ok(!existsSync(join(dir, "var/old")), "directory whiteout applied");
  assert.deepEqual(await readdir(join(dir, "opt/dir")), ["new"], "opaque: x, y and sub/ hidden");
  assert.equal(await readFile(join(dir, "etc/keep"), "utf8"), "changed by the child\n");
  assert.equal((await lstat(join(dir, "usr/bin/tool"))).mode & 0o7777, 0o4755);
  assert.equal(
    (await lstat(join(dir, "usr/bin/tool"))).ino,
    (await lstat(join(dir, "usr/bin/tool-alias"))).ino,
  );
  await dest.close();
});

test("overlays: a file, a directory and a tarball on top, later wins, counted in the export's digest", async () => {
  const src = join(work, "overlay-src");
  await mkdir(join(src, "modules/lib/modules/6.1"), { recursive: true });
  await writeFile(join(src, "init"), "#!/bin/sh\nexec /sbin/init\n");
  await chmod(join(src, "init"), 0o755);
  await writeFile(join(src, "modules/lib/modules/6.1/modules.dep"), "kernel/x.ko:\n");
  await writeFile(join(src, "modules/etc-hostname"), "from the directory\n");
  const tarSrc = join(src, "tarball");
  await mkdir(join(tarSrc, "opt/build"), { recursive: true });
  await writeFile(join(tarSrc, "opt/build/result.txt"), "built\n");
  await run("sh", ["-c", `tar -C ${tarSrc} --owner=0 --group=0 -czf ${join(src, "build.tar.gz")} opt`]);
  await writeFile(join(src, "hostname"), "farm-dut\n");

  const overlays = [
    { source: join(src, "init"), dest: "/init" },
    { source: join(src, "modules") },
    { source: join(src, "build.tar.gz") },
    // Later wins: replaces the image's /etc/hostname.
    { source: join(src, "hostname"), dest: "/etc/hostname" },
  ];
  const out = join(work, "overlay.tar");
  const r = await exportTo("store:deb:essential", "tar", out, { overlays });
  assert.notEqual(r.treeDigest, imageDigest, "overlays change the tree");
  assert.equal((await digestPath(out)).treeDigest, r.treeDigest, "the export's digest covers the overlays");
  const listing = (await run("tar", ["-tvf", out], { maxBuffer: 64 << 20 })).stdout;
  assert.match(listing, /^-rwxr-xr-x 0\/0 .* init$/m);
  assert.match(listing, /^-rw-r--r-- 0\/0 .* lib\/modules\/6\.1\/modules\.dep$/m);
  assert.match(listing, /^-rw-r--r-- 0\/0 .* opt\/build\/result\.txt$/m);
  const hostname = (await run("tar", ["-xOf", out, "etc/hostname"])).stdout;
  assert.equal(hostname, "farm-dut\n");
  // Reproducible with overlays too; and a dir export of the same overlays has the same digest.
  const again = join(work, "overlay-again.tar");
  await exportTo("store:deb:essential", "tar", again, { overlays });
  assert.equal(await sha256File(again), await sha256File(out));
  const dir = join(work, "overlay-dir");
  const rd = await exportTo("store:deb:essential", "dir", dir, { overlays });
  assert.equal(rd.treeDigest, r.treeDigest);
  assert.equal((await digestPath(dir)).treeDigest, r.treeDigest);
  for (const p of [out, again, dir]) await rm(p, { recursive: true, force: true });
});

test("CLI: --force rules, one-line errors, nothing half-written", async () => {
  const cli = (...args: string[]) => rootstock(["--store", storeDir, "-q", ...args]);
  const dir = join(work, "cli-dir");
  await mkdir(dir);
  await writeFile(join(dir, "precious"), "user data\n");
  const refused = await cli("export", "store:deb:essential", "-o", dir);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /^rootstock: .*not empty.*force/);
  assert.equal(refused.stderr.trim().split("\n").length, 1);
  assert.deepEqual(await readdir(dir), ["precious"], "refused export wrote nothing");
  const forced = await cli("export", "store:deb:essential", "-o", dir, "--force", "--json");
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(JSON.parse(forced.stdout).treeDigest, imageDigest);
  assert.equal(
    await readFile(join(dir, "precious"), "utf8"),
    "user data\n",
    "entries not in the export stay",
  );
  assert.ok(!existsSync(`${dir}.rootstock-incomplete`));

  const tar = join(work, "cli.tar");
  await writeFile(tar, "not a tar\n");
  const noForce = await cli("export", "store:deb:essential", "--format", "tar", "-o", tar);
  assert.notEqual(noForce.code, 0);
  assert.match(noForce.stderr, /exists \(use --force/);
  assert.equal(await readFile(tar, "utf8"), "not a tar\n");
  const bad = await cli("export", "store:deb:nosuchtag", "--format", "tar", "-o", join(work, "x.tar"));
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^rootstock: .*nosuchtag/);
  assert.ok(!existsSync(join(work, "x.tar")) && !existsSync(join(work, "x.tar.rootstock-partial")));
  const digest = await cli("digest", join(work, "rootfs.cpio"));
  assert.equal(digest.stdout.trim(), imageDigest);
  const overlayMissing = await cli(
    "export",
    "store:deb:essential",
    "--format",
    "tar",
    "-o",
    join(work, "y.tar"),
    "--overlay",
    "/nonexistent/init:/init",
  );
  assert.match(overlayMissing.stderr, /^rootstock: --overlay \/nonexistent\/init: no such file/);
  await rm(dir, { recursive: true, force: true });
});
