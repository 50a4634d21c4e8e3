/**
 * The tree digest: one sha256 that names a root filesystem whatever form it came in
 * (a scanned directory, an image's merged layers, a tar, a cpio). The exact
 * serialisation is specified in README.md ("Tree digest v1"); change it only together
 * with TREE_DIGEST_VERSION.
 */
import { createHash, type Hash } from "node:crypto";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import type { Tree, TreeNode } from "./tree.js";

export const TREE_DIGEST_VERSION = 1;

const HEADER = `rootstock tree digest v${TREE_DIGEST_VERSION}\n`;

/**
 * Whether an extended attribute is part of the filesystem's content: `user.*` and
 * `security.capability`, with a non-empty value. That is exactly what every form
 * carries: containers/storage (podman export, image layers) writes only those two,
 * Go's archive/tar drops empty values, and the others are the host's, not the
 * image's: security.selinux/ima/evm (host policy and keys), trusted.* (overlayfs
 * bookkeeping such as trusted.overlay.opaque), system.* (ACLs travel as
 * SCHILY.acl.* or not at all; other names are synthesised by the kernel).
 */
export function isContentXattr(name: string, value: Uint8Array): boolean {
  return value.length > 0 && (name.startsWith("user.") || name === "security.capability");
}

const TYPE_LETTER: Record<TreeNode["type"], string> = {
  file: "f",
  dir: "d",
  symlink: "l",
  char: "c",
  block: "b",
  fifo: "p",
};

/**
 * Feeds the serialisation to the hash in large UTF-8 text runs (one native call per
 * ~64 KiB instead of several per entry); binary xattr values go in as raw bytes.
 */
class Serialiser {
  #text = "";
  constructor(readonly hash: Hash) {}

  text(s: string): void {
    this.#text += s;
    if (this.#text.length > 65536) this.flush();
  }

  /** A length-prefixed string: decimal UTF-8 byte count, ":", the bytes. */
  field(s: string): void {
    this.text(`${Buffer.byteLength(s, "utf8")}:${s}`);
  }

  bytes(value: Uint8Array): void {
    this.text(`${value.length}:`);
    this.flush();
    this.hash.update(value);
  }

  flush(): void {
    if (this.#text.length > 0) this.hash.update(this.#text, "utf8");
    this.#text = "";
  }
}

function writeNode(out: Serialiser, path: string, node: TreeNode): void {
  out.text(`${TYPE_LETTER[node.type]} `);
  out.field(path);
  // Symlink permission bits mean nothing on Linux and tar writers disagree on them.
  const mode = node.type === "symlink" ? "-" : (node.mode & 0o7777).toString(8).padStart(4, "0");
  out.text(` ${mode} ${node.uid} ${node.gid} ${node.mtime.sec}`);
  switch (node.type) {
    case "file":
      if (!node.digest) {
        throw new RootstockError("INTERNAL", `tree digest: ${JSON.stringify(path)} has no content digest`);
      }
      out.text(` ${node.size} ${node.digest.slice(7)}`);
      break;
    case "symlink":
      out.text(" ");
      out.field(node.linkTarget ?? "");
      break;
    case "char":
    case "block":
      out.text(` ${node.devmajor} ${node.devminor}`);
      break;
    default:
      break;
  }
  for (const [name, value] of node.xattrs) {
    if (!isContentXattr(name, value)) continue;
    out.text(" x");
    out.field(name);
    out.bytes(value);
  }
  out.text("\n");
}

/**
 * The tree digest of `tree` (pure; every file must carry its content digest). For a
 * tar stream, `fromTar` hashes contents while reading, so `treeDigest(await
 * fromTar(...))` never holds file data in memory.
 */
export function treeDigest(tree: Tree): Digest {
  const hash = createHash("sha256");
  const out = new Serialiser(hash);
  out.text(HEADER);
  const firstPath = new Map<TreeNode, string>();
  // Only regular files form groups: hard-linked symlinks, devices and fifos behave as
  // copies, and cpio writers and safe extractors turn them into copies.
  for (const [node, paths] of tree.hardlinkGroups()) if (node.type === "file") firstPath.set(node, paths[0]!);
  for (const path of tree.sortedPaths()) {
    if (path === "") continue; // the root's own attributes are not part of the digest
    const node = tree.get(path)!;
    const first = firstPath.get(node);
    if (first !== undefined && first !== path) {
      out.text("h ");
      out.field(path);
      out.text(" ");
      out.field(first);
      out.text("\n");
    } else {
      writeNode(out, path, node);
    }
  }
  out.flush();
  return `sha256:${hash.digest("hex")}`;
}
