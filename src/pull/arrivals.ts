/**
 * File objects a partial pull is still fetching, so the layer's verification (the
 * tar rebuilt from tar-split and file objects, hashed to its diff_id) can run while
 * they arrive instead of after: it reads the files the store already had at once
 * and waits only at the first one still on the way.
 *
 * `wait(digest)` is undefined for a file not expected (already in the store), else
 * resolves once `arrived(digest)` is called. `fail(err)` rejects every wait, now and
 * later; `finish()` rejects any wait still open, for a file the fetch never stored,
 * so a bug there is an error and never a hang.
 */
import { RootstockError } from "../errors.js";
import type { Digest } from "../oci/digest.js";

interface Pending {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class Arrivals {
  private readonly pending = new Map<Digest, Pending>();
  private failure: unknown;

  constructor(expected: Iterable<Digest>) {
    for (const digest of expected) {
      if (this.pending.has(digest)) continue;
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // A wait nobody made must not become an unhandled rejection.
      promise.catch(() => {});
      this.pending.set(digest, { promise, resolve, reject });
    }
  }

  wait(digest: Digest): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    return this.pending.get(digest)?.promise;
  }

  arrived(digest: Digest): void {
    const entry = this.pending.get(digest);
    if (!entry) return;
    this.pending.delete(digest);
    entry.resolve();
  }

  fail(err: unknown): void {
    this.failure ??= err;
    for (const entry of this.pending.values()) entry.reject(this.failure);
  }

  finish(): void {
    for (const [digest, entry] of this.pending) {
      entry.reject(
        new RootstockError("INTERNAL", `file object ${digest} was to be fetched but never stored`),
      );
    }
  }
}
