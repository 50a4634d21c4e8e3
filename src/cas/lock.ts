/**
 * Cross-process locking without flock: lock files created with O_EXCL that name
 * their owner (`PID-STARTTIME`), so a lock left by a dead process is detected and
 * broken. Every function takes the lock directory (`<store>/locks`); its name is
 * called `root` below.
 *
 * Two modes over one lock directory:
 * - shared leases, `shared/<owner>-<rand>`: held by writers from before they ingest
 *   until after they have referenced what they wrote (ref or metadata set);
 * - the exclusive lock, `exclusive`: held by gc and fsck --repair.
 *
 * Protocol (both sides write first, then look, so at least one sees the other):
 * a writer creates its lease, then checks for a live exclusive lock; if there is
 * one it removes its lease and waits. gc creates the exclusive lock, then waits
 * until no live lease remains. Within a process, leases on one root are counted
 * and share one lease file; operations under the process's own exclusive lock need
 * no lease.
 */
import { randomBytes } from "node:crypto";
import { open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { RootstockError } from "../errors.js";
import { ensureDir, isOwnerAlive, ownerOfName, PROCESS_ID, uniqueName } from "./atomic.js";

const POLL_MS = 25;

interface ProcessLease {
  count: number;
  file: string;
  /** Settles once the lease file exists and no exclusive lock was seen. */
  ready: Promise<void>;
}

/** Per-root lock state of this process. */
const leases = new Map<string, ProcessLease>();
const exclusives = new Set<string>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LockOptions {
  /** How long to wait for the other mode before failing with LOCKED (ms). */
  timeoutMs?: number;
}

function exclusivePath(lockDir: string): string {
  return join(lockDir, "exclusive");
}

/** The owner of the exclusive lock if a live process holds it; removes a dead owner's lock. */
async function liveExclusiveOwner(root: string): Promise<string | undefined> {
  const path = exclusivePath(root);
  let owner: string;
  try {
    owner = (await readFile(path, "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  // An empty file is a lock being created right now, unless its creator died before writing.
  if (owner === "") {
    const info = await stat(path).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs < 10_000) return "(starting)";
  } else if (owner === PROCESS_ID || isOwnerAlive(owner)) return owner;
  // Break the stale lock by renaming it aside first, so two breakers cannot both
  // remove a fresh lock someone created in between; then check what we took.
  const aside = `${path}.stale-${randomBytes(6).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch {
    return undefined;
  }
  const taken = (await readFile(aside, "utf8").catch(() => "")).trim();
  if (taken !== owner && taken !== "" && isOwnerAlive(taken)) {
    // We took a fresh lock: put it back.
    await rename(aside, path).catch(() => {});
    return taken;
  }
  await rm(aside, { force: true });
  return undefined;
}

/** Holds a shared lease on `root` while `fn` runs. */
export async function withSharedLease<T>(
  root: string,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  const release = await acquireShared(root, opts);
  try {
    return await fn();
  } finally {
    await release();
  }
}

export async function acquireShared(root: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  if (exclusives.has(root)) return async () => {};
  const held = leases.get(root);
  if (held) {
    held.count++;
    try {
      await held.ready;
    } catch (err) {
      held.count--;
      throw err;
    }
    return () => releaseShared(root);
  }
  const dir = join(root, "shared");
  const deadline = Date.now() + (opts.timeoutMs ?? 5 * 60_000);
  // Register before the first await: concurrent calls in this process join this lease.
  const lease: ProcessLease = { count: 1, file: join(dir, uniqueName()), ready: Promise.resolve() };
  leases.set(root, lease);
  lease.ready = (async () => {
    await ensureDir(dir);
    for (;;) {
      const handle = await open(lease.file, "wx", 0o644);
      await handle.close();
      const owner = await liveExclusiveOwner(root);
      if (owner === undefined) break;
      await rm(lease.file, { force: true });
      if (Date.now() > deadline) {
        throw new RootstockError(
          "LOCKED",
          `lock ${root}: exclusive lock held by process ${owner} (gc or repair running)`,
        );
      }
      await sleep(POLL_MS);
    }
  })();
  try {
    await lease.ready;
  } catch (err) {
    leases.delete(root);
    throw err;
  }
  return () => releaseShared(root);
}

async function releaseShared(root: string): Promise<void> {
  const held = leases.get(root);
  if (!held) return;
  held.count--;
  if (held.count > 0) return;
  leases.delete(root);
  await rm(held.file, { force: true });
}

/** Holds the exclusive lock on `root` while `fn` runs (no live lease exists meanwhile). */
export async function withExclusiveLock<T>(
  root: string,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  if (leases.has(root)) {
    throw new RootstockError(
      "LOCKED",
      `lock ${root}: this process holds a shared lease; cannot take the exclusive lock`,
    );
  }
  if (exclusives.has(root)) return fn();
  await ensureDir(join(root, "shared"));
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const path = exclusivePath(root);
  for (;;) {
    try {
      const handle = await open(path, "wx", 0o644);
      await handle.writeFile(PROCESS_ID);
      await handle.sync();
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = await liveExclusiveOwner(root);
      if (owner !== undefined && Date.now() > deadline) {
        throw new RootstockError("LOCKED", `lock ${root}: exclusive lock held by process ${owner}`);
      }
      await sleep(POLL_MS);
    }
  }
  exclusives.add(root);
  try {
    await waitForLeases(root, deadline);
    return await fn();
  } finally {
    exclusives.delete(root);
    await rm(path, { force: true });
  }
}

/** Waits until every lease belongs to a dead process (whose lease files are removed). */
async function waitForLeases(root: string, deadline: number): Promise<void> {
  const dir = join(root, "shared");
  for (;;) {
    let live: string | undefined;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const owner = ownerOfName(name);
      if (owner !== undefined && isOwnerAlive(owner)) live = owner;
      else await rm(join(dir, name), { force: true });
    }
    if (live === undefined) return;
    if (Date.now() > deadline) {
      throw new RootstockError("LOCKED", `lock ${root}: a writer (process ${live}) holds a shared lease`);
    }
    await sleep(POLL_MS);
  }
}

/** Whether this process holds the exclusive lock on `root`. */
export function holdsExclusive(root: string): boolean {
  return exclusives.has(root);
}
