/**
 * The `import` producer: an existing image's root filesystem as a directory (e.g.
 * one built by buildah). Tarballs are extracted here with GNU tar; registry and
 * OCI layout sources need the remote/layout/export modules, so they come in as an
 * `unpack` function the build glue passes (the seam).
 */
import { mkdir, readdir } from "node:fs/promises";
import { RootstockError } from "../../errors.js";
import { type ProgressSink, silentProgress } from "../../progress.js";
import type { ImportSource } from "../graph.js";
import { resolveInside } from "../inputs.js";
import { runTool } from "./exec.js";
import { removeTree } from "./mounts.js";

/** Writes the image named by `source` (all layers applied) into the empty directory `target`. */
export type ImageUnpacker = (
  source: Exclude<ImportSource, { transport: "tarball" }>,
  target: string,
  options: { baseDir: string; progress: ProgressSink; signal?: AbortSignal },
) => Promise<void>;

export interface ImportProducer {
  source: ImportSource;
  /** Directory of images.yaml: tarball and layout paths are relative to it. */
  baseDir: string;
  /** Must not exist, or be empty. */
  target: string;
  unpack?: ImageUnpacker;
  progress?: ProgressSink;
  signal?: AbortSignal;
}

export async function produceImport(p: ImportProducer): Promise<void> {
  const progress = p.progress ?? silentProgress;
  const existing = await readdir(p.target).catch(() => undefined);
  if (existing && existing.length > 0) {
    throw new RootstockError("ALREADY_EXISTS", `import target ${p.target} is not empty`);
  }
  const { source } = p;
  if (source.transport !== "tarball" && !p.unpack) {
    throw new RootstockError(
      "INVALID_ARGUMENT",
      `import from ${source.transport === "docker" ? source.reference : `oci:${source.path}:${source.ref}`}` +
        " needs an image unpacker (remote/layout modules)",
    );
  }
  const tarball =
    source.transport === "tarball" ? await resolveInside(p.baseDir, source.path, "import") : undefined;
  await mkdir(p.target, { recursive: true });
  try {
    if (tarball) {
      // GNU tar refuses `..` members and defers symlinks that would let later members escape
      await runTool({
        what: "import (tar -x)",
        argv: [
          "tar",
          "-x",
          "-p",
          "--xattrs",
          "--xattrs-include=*",
          "--numeric-owner",
          "-f",
          tarball,
          "-C",
          p.target,
        ],
        progress,
        ...(p.signal ? { signal: p.signal } : {}),
      });
    } else if (source.transport !== "tarball") {
      await p.unpack!(source, p.target, {
        baseDir: p.baseDir,
        progress,
        ...(p.signal ? { signal: p.signal } : {}),
      });
    }
  } catch (err) {
    await removeTree(p.target);
    throw err;
  }
}
