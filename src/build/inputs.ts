/**
 * The I/O edge of planning: hashes every file the graph's images read. This is the
 * only disk access `plan` needs. Paths are relative to images.yaml; a path that
 * resolves (through symlinks) outside that directory is refused.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir, realpath, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";
import { filesRead, type Graph, type ImageNode } from "./graph.js";

async function hashFile(path: string): Promise<Digest> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}

/**
 * A directory's hash: one line per entry in byte order of relative paths, with the
 * executable bit (what git keeps) and the content hash; symlinks by their target.
 */
async function hashTree(root: string): Promise<Digest> {
  const lines: string[] = [];
  const walk = async (dir: string) => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)),
    );
    for (const entry of entries) {
      const full = join(dir, entry.name);
      const rel = relative(root, full).split(sep).join("/");
      if (entry.isDirectory()) {
        lines.push(`d ${rel}`);
        await walk(full);
      } else if (entry.isFile()) {
        const info = await stat(full);
        lines.push(`${info.mode & 0o111 ? "x" : "f"} ${rel} ${await hashFile(full)}`);
      } else {
        const info = await lstat(full);
        lines.push(`${info.isSymbolicLink() ? "l" : "o"} ${rel}`);
      }
    }
  };
  await walk(root);
  return `sha256:${createHash("sha256").update(lines.join("\n")).digest("hex")}`;
}

/** The absolute path of `rel` under `baseDir`, refused if it resolves outside it. */
export async function resolveInside(baseDir: string, rel: string, what: string): Promise<string> {
  const base = await realpath(baseDir);
  let real: string;
  try {
    real = await realpath(join(base, rel));
  } catch (err) {
    throw new RootstockError("NOT_FOUND", `${what}: ${rel} does not exist`, { cause: err });
  }
  if (real !== base && !real.startsWith(base + sep)) {
    throw new RootstockError("UNSAFE_PATH", `${what}: ${rel} resolves outside ${base}`);
  }
  return real;
}

/** Which node (and field) first reads `path`, for error messages. */
function reader(graph: Graph, path: string): { node: ImageNode; field: string } | undefined {
  for (const id of graph.order) {
    const node = graph.images.get(id)!;
    if (!filesRead(node).includes(path)) continue;
    const field =
      node.script?.scripts.includes(path) === true
        ? "scripts"
        : node.script?.files.some((f) => f.src === path)
          ? "files"
          : node.extraInputs.includes(path)
            ? "inputs"
            : node.base.kind === "mmdebstrap"
              ? "mmdebstrap"
              : "from";
    return { node, field };
  }
  return undefined;
}

/** sha256 of every file (tree hash of every directory) read by the graph, by relative path. */
export async function hashInputFiles(
  graph: Graph,
  baseDir = dirname(graph.filename),
): Promise<Map<string, Digest>> {
  const paths = new Set<string>();
  for (const node of graph.images.values()) for (const p of filesRead(node)) paths.add(p);
  const out = new Map<string, Digest>();
  await Promise.all(
    [...paths].map(async (rel) => {
      const by = reader(graph, rel);
      const what = by ? `${by.node.where([by.field])}: images.${by.node.name}.${by.field}` : graph.filename;
      const real = await resolveInside(baseDir, rel, what);
      const info = await stat(real);
      out.set(rel, info.isDirectory() ? await hashTree(real) : await hashFile(real));
    }),
  );
  return out;
}
