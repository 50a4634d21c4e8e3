/**
 * `--overlay SRC[:DEST]`: farm-specific files added on top of an image (an /init, a
 * build tarball, kernel modules). Each overlay becomes one more layer applied after
 * the image's (later wins, whiteouts in a tarball apply), so the export's tree
 * digest covers it. Contents are imported into the store as file objects first, so
 * every export format reads them the same way and an overlay changed on disk
 * midway cannot slip in unverified.
 *
 * SRC kinds (by lstat, then magic bytes):
 * - a directory: its contents go under DEST (default `/`); the directory itself
 *   gives DEST its attributes unless DEST is `/`;
 * - an archive (tar or cpio, plain/gzip/zstd, found by magic bytes) : its entries go
 *   under DEST (default `/`), owners and modes as recorded in it;
 * - any other file: placed at DEST (default `/NAME`; a DEST ending in `/` gets NAME
 *   appended).
 * Files and directories from disk are owned by 0:0 (like a Dockerfile COPY), keep
 * their mode and mtime; symlinks are kept as links. Same SRC → same entries.
 */
import { lstat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { ContentStore } from "../cas/store.js";
import type { TocEntry } from "../compress/toc.js";
import { RootstockError } from "../errors.js";
import { layerEntryOf } from "../layers/entries.js";
import { EMPTY_SHA256 } from "../oci/digest.js";
import { type LayerEntry, normalisePath, scan, treeAsLayer } from "../tree/index.js";

export interface OverlaySpec {
  source: string;
  /** Destination inside the image ("/" if not given for directories and archives). */
  dest?: string;
}

/** Parses `SRC[:DEST]`; DEST starts with "/", so the split is at the last ":/". */
export function parseOverlaySpec(text: string): OverlaySpec {
  const at = text.lastIndexOf(":/");
  const source = at > 0 ? text.slice(0, at) : text;
  const dest = at > 0 ? text.slice(at + 1) : undefined;
  if (source === "")
    throw new RootstockError("INVALID_ARGUMENT", `--overlay ${JSON.stringify(text)}: no source`);
  if (dest !== undefined) normalisePath(dest, `--overlay ${text}: destination`);
  return dest === undefined ? { source } : { source, dest };
}

function prefixed(entries: LayerEntry[], dest: string): LayerEntry[] {
  if (dest === "") return entries;
  const join2 = (p: string) => (p === "" ? dest : `${dest}/${p}`);
  return entries.map((e) =>
    e.kind === "hardlink"
      ? { ...e, path: join2(e.path), target: join2(e.target) }
      : { ...e, path: join2(e.path) },
  );
}

/** The overlay as layer entries, contents stored as file objects in `store`. */
export async function overlayEntries(spec: OverlaySpec, store: ContentStore): Promise<LayerEntry[]> {
  const what = `--overlay ${spec.source}`;
  const src = resolve(spec.source);
  const st = await lstat(src).catch(() => undefined);
  if (!st) throw new RootstockError("NOT_FOUND", `${what}: no such file or directory`);
  const destText = spec.dest ?? "/";
  const dest = normalisePath(destText, `${what}: destination`);

  if (st.isDirectory()) {
    const { tree } = await scan(src);
    const entries = treeAsLayer(tree).map(
      (e): LayerEntry => (e.kind === "node" ? { ...e, node: { ...e.node, uid: 0, gid: 0 } } : e),
    );
    await store.withLease(async () => {
      for (const e of entries) {
        if (e.kind === "node" && e.node.type === "file" && e.node.size > 0) {
          await store.importFile(join(src, e.path), { digest: e.node.digest!, size: e.node.size });
        }
      }
    });
    const out = prefixed(entries, dest);
    if (dest !== "") out.unshift({ kind: "node", path: dest, node: { ...tree.root, uid: 0, gid: 0 } });
    return out;
  }
  if (!st.isFile()) throw new RootstockError("INVALID_ARGUMENT", `${what}: not a file or directory`);

  // Archive readers are loaded only for overlays (every export imports this module).
  const [{ detectArchive, readArchive }, { tocEntryFromHeader }] = await Promise.all([
    import("./archive-input.js"),
    import("../compress/toc.js"),
  ]);
  const isArchive = await detectArchive(src).then(
    (info) =>
      info.kind === "cpio" || /\.(tar|tar\.gz|tgz|tar\.zst|tzst)$/.test(src) || info.compression !== "none",
    () => false,
  );
  if (isArchive) {
    const toc: TocEntry[] = [];
    const { entries } = await readArchive(src);
    await store.withLease(async () => {
      for await (const { header, payload } of entries) {
        if (header.nameRaw || header.linknameRaw) {
          throw new RootstockError(
            "INVALID_FORMAT",
            `${what}: entry ${JSON.stringify(header.name)}: name is not valid UTF-8`,
          );
        }
        const entry = tocEntryFromHeader(header);
        if (header.type === "file" && header.size > 0) {
          entry.digest = (await store.files.put(payload, { size: header.size })).digest;
        } else {
          for await (const _ of payload) {
          }
        }
        toc.push(entry);
      }
    });
    await store.flush();
    return prefixed(toc.map(layerEntryOf), dest);
  }

  // A single file.
  const target =
    spec.dest === undefined ? basename(src) : spec.dest.endsWith("/") ? `${dest}/${basename(src)}` : dest;
  const path = normalisePath(target, `${what}: destination`);
  if (path === "")
    throw new RootstockError("INVALID_ARGUMENT", `${what}: a file cannot replace the root directory`);
  const put = st.size > 0 ? await store.importFile(src) : { digest: EMPTY_SHA256, size: 0 };
  return [
    {
      kind: "node",
      path,
      node: {
        type: "file",
        mode: st.mode & 0o7777,
        uid: 0,
        gid: 0,
        mtime: { sec: Math.floor(st.mtimeMs / 1000), nsec: 0 },
        size: put.size,
        digest: put.digest,
        devmajor: 0,
        devminor: 0,
        xattrs: [],
      },
    },
  ];
}
