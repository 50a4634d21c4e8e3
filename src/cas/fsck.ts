/**
 * fsck: re-hashes every blob and file object (two at a time), checks they are
 * read-only, and checks the graph: refs that point nowhere, reachable children
 * that are missing, manifests that do not parse, unreadable refs and metadata.
 * Ingest files of dead processes are reported as harmless leftovers (gc removes
 * them), not problems. With `repair`, corrupt objects are deleted (under the
 * exclusive lock) so a later pull can fetch them again.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Digest } from "../oci/digest.js";
import { parseDescriptor, parseJsonBytes } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { isOwnerAlive, ownerOfName } from "./atomic.js";
import { HashPool } from "./hashpool.js";
import type { ObjectDir } from "./objectdir.js";
import { computeReachability } from "./reach.js";
import { type ContentStore, safeDecode } from "./store.js";

export type FsckProblemKind =
  | "corrupt-object" // content does not hash to its name
  | "writable-object" // an object is not read-only
  | "dangling-ref" // a ref names a blob that is absent
  | "bad-ref" // a ref file that is not a valid descriptor
  | "missing-child" // a reachable manifest names an absent blob
  | "unreadable-manifest" // a reachable manifest or index does not parse
  | "bad-meta" // a metadata document that does not parse
  | "stray-file"; // a file in an object directory that is not named like an object

export interface FsckProblem {
  kind: FsckProblemKind;
  /** The object, ref or path concerned. */
  object: string;
  detail: string;
  /** Set when repair deleted the object. */
  repaired?: boolean;
}

export interface FsckReport {
  clean: boolean;
  problems: FsckProblem[];
  /** Harmless: ingest files of processes that died mid-write (gc removes them). */
  leftovers: string[];
  checked: { blobs: number; files: number; refs: number; meta: number };
}

export interface FsckOptions {
  /** Delete corrupt objects (takes the exclusive lock). */
  repair?: boolean;
  /** Parallel hashing (default 2). */
  concurrency?: number;
  progress?: ProgressSink;
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

export async function fsck(store: ContentStore, opts: FsckOptions = {}): Promise<FsckReport> {
  const run = () => fsckUnlocked(store, opts);
  return opts.repair ? store.withExclusive(run) : store.withLease(run);
}

async function fsckUnlocked(store: ContentStore, opts: FsckOptions): Promise<FsckReport> {
  const pool = new HashPool(opts.concurrency ?? 2);
  try {
    return await fsckWith(store, opts, pool);
  } finally {
    await pool.close();
  }
}

async function fsckWith(store: ContentStore, opts: FsckOptions, pool: HashPool): Promise<FsckReport> {
  const progress = opts.progress ?? silentProgress;
  const problems: FsckProblem[] = [];
  const checked = { blobs: 0, files: 0, refs: 0, meta: 0 };

  const verifyDir = async (dir: ObjectDir, kind: "blobs" | "files") => {
    const { digests, stray } = await dir.list();
    for (const path of stray)
      problems.push({ kind: "stray-file", object: path, detail: "not named like an object" });
    let done = 0;
    progress({
      type: "start",
      id: `fsck-${kind}`,
      label: `verify ${kind}`,
      total: digests.length,
      unit: "items",
    });
    await mapLimit(digests, opts.concurrency ?? 2, async (digest: Digest) => {
      const path = dir.path(digest);
      const info = await stat(path).catch(() => undefined);
      if (info && (info.mode & 0o222) !== 0) {
        problems.push({
          kind: "writable-object",
          object: `${dir.kind} ${digest}`,
          detail: `mode ${(info.mode & 0o7777).toString(8)} is writable`,
        });
      }
      const actual = await pool.hash(path).catch(() => undefined);
      if (actual?.digest !== digest) {
        const problem: FsckProblem = {
          kind: "corrupt-object",
          object: `${dir.kind} ${digest}`,
          detail: actual ? `content hashes to ${actual.digest}` : "unreadable",
        };
        if (opts.repair) problem.repaired = await dir.remove(digest);
        problems.push(problem);
      }
      checked[kind]++;
      progress({ type: "advance", id: `fsck-${kind}`, current: ++done, total: digests.length });
    });
    progress({ type: "done", id: `fsck-${kind}` });
  };
  await verifyDir(store.blobs, "blobs");
  await verifyDir(store.files, "files");

  // Refs: every file must be a descriptor naming a present blob.
  const refsRoot = join(store.root, "refs");
  for (const escaped of await readdir(refsRoot).catch(() => [] as string[])) {
    for (const tag of await readdir(join(refsRoot, escaped)).catch(() => [] as string[])) {
      const name = `${safeDecode(escaped) ?? escaped}:${tag}`;
      checked.refs++;
      try {
        const bytes = await readFile(join(refsRoot, escaped, tag));
        const desc = parseDescriptor(parseJsonBytes(bytes, `ref ${name}`), `ref ${name}`);
        if (!(await store.hasBlob(desc.digest))) {
          problems.push({
            kind: "dangling-ref",
            object: `ref ${name}`,
            detail: `blob ${desc.digest} is missing`,
          });
        }
      } catch (err) {
        problems.push({ kind: "bad-ref", object: `ref ${name}`, detail: (err as Error).message });
      }
    }
  }

  const meta = await store.listMeta();
  for (const path of meta.stray)
    problems.push({ kind: "stray-file", object: path, detail: "not a metadata document" });
  for (const key of meta.keys) {
    checked.meta++;
    try {
      await store.getMeta(key);
    } catch (err) {
      problems.push({ kind: "bad-meta", object: `metadata ${key}`, detail: (err as Error).message });
    }
  }

  const reach = await computeReachability(store);
  for (const u of reach.unreadable) {
    problems.push({
      kind: "unreadable-manifest",
      object: `blob ${u.digest}`,
      detail: `${u.error} (from ${u.from})`,
    });
  }
  for (const m of reach.missing) {
    // Dangling refs are reported above; non-distributable layers and stand-ins may be absent.
    if (m.optional || !m.from.includes("→")) continue;
    problems.push({ kind: "missing-child", object: `blob ${m.digest}`, detail: `referenced by ${m.from}` });
  }
  for (const d of reach.files) {
    if (!(await store.hasFile(d))) {
      problems.push({
        kind: "missing-child",
        object: `file object ${d}`,
        detail: "named by a reachable metadata document",
      });
    }
  }

  const leftovers: string[] = [];
  for (const name of await store.listIngest()) {
    const owner = ownerOfName(name);
    if (owner === undefined || !isOwnerAlive(owner)) leftovers.push(join(store.ingestDir, name));
  }
  return { clean: problems.length === 0, problems, leftovers, checked };
}
