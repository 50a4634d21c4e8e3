/**
 * One repository on a registry: the distribution API's manifest, blob, upload, tag
 * and delete endpoints. Every byte read is verified (manifests by digest, blobs by
 * size and digest at the end of the stream); every byte pushed is hashed on the way
 * and the upload is only committed when it matches.
 */
import { RootstockError } from "../errors.js";
import { acceptBorrowedChunks, lendingStream } from "../oci/borrow.js";
import {
  type Digest,
  Digester,
  isDigest,
  markVerified,
  parseDigest,
  sha256,
  TrustedDigester,
  verifyDigest,
} from "../oci/digest.js";
import { isIndexMediaType, MediaType } from "../oci/mediatypes.js";
import { type Platform, selectManifest } from "../oci/platform.js";
import { parseIndex } from "../oci/types.js";
import { type ProgressSink, silentProgress } from "../progress.js";
import { repositoryScope } from "./auth.js";
import type { RegistryClient, Response } from "./client.js";
import { RegistryError } from "./errors.js";
import {
  backoffDelay,
  discardBody,
  headerValue,
  isTransientError,
  networkError,
  readBounded,
  sleep,
} from "./http.js";
import { multipartBoundary, parseByteranges } from "./multipart.js";
import {
  type ByteRange,
  contentRangeMatches,
  parseContentRange,
  planRangeRequests,
  type RangeBytes,
  type RangePlanOptions,
  rangeHeader,
  type Span,
  SpanCollector,
} from "./ranges.js";

/** What we accept by default: both manifest families, single and multi-platform. */
export const DEFAULT_MANIFEST_ACCEPT = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
];

/** containers/image's limit: manifests are small, a huge one is an attack. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export interface ManifestResult {
  bytes: Uint8Array;
  mediaType: string;
  digest: Digest;
}

export interface GetManifestOptions {
  /** Accept header media types; default DEFAULT_MANIFEST_ACCEPT. */
  accept?: readonly string[];
  /** When the answer is an index, fetch the manifest for this platform instead. */
  platform?: Platform;
}

export interface OpenBlobOptions {
  /** Expected size: checked at the end, and a stream running past it stops at once. */
  size?: number;
  /** Start here; the caller already has bytes [0, offset) and passes them hashed in `digester`. */
  offset?: number;
  /** Hash state of the first `offset` bytes (required when offset > 0). */
  digester?: Digester;
  progress?: ProgressSink;
}

/** A blob to push: bytes in memory, or a function that opens its stream (once per attempt). */
export type BlobContent = Uint8Array | (() => AsyncIterable<Uint8Array>);

export interface PushBlobOptions {
  digest: Digest;
  size: number;
  /** Repositories on the same registry that may hold the blob: mount instead of upload. */
  mountFrom?: readonly string[];
  /** Blobs up to this size go in one PUT; larger ones in PATCH chunks. Default 16 MiB. */
  monolithicMax?: number;
  /**
   * The content's streams check their own digest and throw at their end on a
   * mismatch (an endpoint's `open`): a streamed upload then only counts bytes
   * instead of hashing them a second time. The registry checks the digest too.
   */
  contentVerified?: boolean;
  /**
   * Upload larger blobs in PATCH chunks of this size (the memory a push then holds).
   * Unset: one streamed PATCH, resumed from the session's offset after a drop
   * (much faster on distribution, which pays a fixed cost per PATCH).
   */
  chunkSize?: number;
  progress?: ProgressSink;
}

export type PushBlobResult = "exists" | "mounted" | "uploaded";

export interface BlobRangesOptions extends RangePlanOptions {}

export class Repository {
  constructor(
    readonly client: RegistryClient,
    readonly name: string,
  ) {}

  /** `host/name`, the prefix of every error about this repository. */
  get where(): string {
    return `${this.client.host}/${this.name}`;
  }

  private pull(): string[] {
    return [repositoryScope(this.name, ["pull"])];
  }

  private push(): string[] {
    return [repositoryScope(this.name, ["pull", "push"])];
  }

  private refWhere(ref: string): string {
    return isDigest(ref) ? `${this.where}@${ref}` : `${this.where}:${ref}`;
  }

  private checkRef(ref: string): void {
    if (!isDigest(ref) && !TAG_RE.test(ref)) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `${this.where}: not a tag or sha256 digest: ${JSON.stringify(ref)}`,
      );
    }
  }

  // ---- manifests ------------------------------------------------------------

  /**
   * A small document by digest (a manifest, an index, a config), verified and at
   * most `maxBytes`. A registry keeps manifests apart from blobs: `manifest` says
   * which endpoint to ask. Only what the caller knows to be a manifest goes to
   * /manifests/: distribution answers a config digest there with a 500.
   */
  async readDocument(
    blob: { digest: Digest; size?: number },
    opts: { manifest: boolean; maxBytes: number },
  ): Promise<Uint8Array> {
    const what = `${this.where}@${blob.digest}`;
    if (blob.size !== undefined && blob.size > opts.maxBytes)
      throw new RootstockError("INVALID_FORMAT", `${what}: ${blob.size} bytes, over ${opts.maxBytes}`);
    if (opts.manifest) {
      const m = await this.getManifest(blob.digest);
      verifyDigest({ digest: m.digest, size: m.bytes.length }, blob, what);
      return m.bytes;
    }
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of this.openBlob(
      blob.digest,
      blob.size !== undefined ? { size: blob.size } : {},
    )) {
      total += chunk.length;
      if (total > opts.maxBytes)
        throw new RootstockError("INVALID_FORMAT", `${what}: over ${opts.maxBytes} bytes`);
      parts.push(chunk);
    }
    return Buffer.concat(parts);
  }

  /** A manifest by tag or digest, its bytes verified; an index resolved to `platform` when given. */
  async getManifest(ref: string, opts: GetManifestOptions = {}): Promise<ManifestResult> {
    this.checkRef(ref);
    const where = this.refWhere(ref);
    const accept = opts.accept ?? DEFAULT_MANIFEST_ACCEPT;
    const res = await this.client.send({
      method: "GET",
      url: `/v2/${this.name}/manifests/${ref}`,
      headers: { accept: accept.join(", ") },
      scopes: this.pull(),
      expect: [200],
      where,
    });
    const bytes = new Uint8Array(await readBounded(res.body, MAX_MANIFEST_BYTES, where));
    const digest = sha256(bytes);
    if (isDigest(ref)) {
      verifyDigest({ digest, size: bytes.length }, { digest: ref }, where);
    } else {
      const claimed = headerValue(res.headers, "docker-content-digest");
      if (claimed && isDigest(claimed) && claimed !== digest) {
        throw new RootstockError(
          "DIGEST_MISMATCH",
          `${where}: manifest hashes to ${digest}, registry says ${claimed}`,
        );
      }
    }
    const mediaType = manifestMediaType(headerValue(res.headers, "content-type"), bytes);
    if (opts.platform && isIndexMediaType(mediaType)) {
      const entry = selectManifest(parseIndex(bytes, where), opts.platform, where);
      const chosen = await this.getManifest(entry.digest, {
        accept: accept.filter((t) => !isIndexMediaType(t)),
      });
      if (chosen.bytes.length !== entry.size) {
        throw new RootstockError(
          "SIZE_MISMATCH",
          `${where}: manifest ${entry.digest} is ${chosen.bytes.length} bytes, index says ${entry.size}`,
        );
      }
      return chosen;
    }
    return { bytes, mediaType, digest };
  }

  /** Digest, media type and size of a manifest without its body; undefined when absent. */
  async headManifest(
    ref: string,
    opts: { accept?: readonly string[] } = {},
  ): Promise<
    { digest: Digest | undefined; mediaType: string | undefined; size: number | undefined } | undefined
  > {
    this.checkRef(ref);
    const res = await this.client.send({
      method: "HEAD",
      url: `/v2/${this.name}/manifests/${ref}`,
      headers: { accept: (opts.accept ?? DEFAULT_MANIFEST_ACCEPT).join(", ") },
      scopes: this.pull(),
      expect: [200, 404],
      where: this.refWhere(ref),
    });
    await res.body.dump();
    if (res.statusCode === 404) return undefined;
    const digest = headerValue(res.headers, "docker-content-digest");
    const length = headerValue(res.headers, "content-length");
    return {
      digest: digest && isDigest(digest) ? digest : undefined,
      mediaType: headerValue(res.headers, "content-type")?.split(";")[0]?.trim(),
      size: length === undefined ? undefined : Number(length),
    };
  }

  /** Stores a manifest under a tag or its digest; returns its digest. Its blobs must be pushed first. */
  async putManifest(ref: string, bytes: Uint8Array, mediaType: string): Promise<Digest> {
    this.checkRef(ref);
    const where = this.refWhere(ref);
    const digest = sha256(bytes);
    if (isDigest(ref))
      verifyDigest({ digest, size: bytes.length }, { digest: ref }, `${where}: manifest to push`);
    const res = await this.client.send({
      method: "PUT",
      url: `/v2/${this.name}/manifests/${ref}`,
      headers: { "content-type": mediaType },
      body: bytes,
      scopes: this.push(),
      expect: [200, 201],
      where,
    });
    await res.body.dump();
    const stored = headerValue(res.headers, "docker-content-digest");
    if (stored && isDigest(stored) && stored !== digest) {
      throw new RootstockError(
        "DIGEST_MISMATCH",
        `${where}: registry stored the manifest as ${stored}, expected ${digest}`,
      );
    }
    return digest;
  }

  /** Deletes a manifest by digest (and so every tag pointing at it). */
  async deleteManifest(digest: Digest): Promise<void> {
    parseDigest(digest, `${this.where}: manifest to delete`);
    const res = await this.client.send({
      method: "DELETE",
      url: `/v2/${this.name}/manifests/${digest}`,
      scopes: [repositoryScope(this.name, ["delete"])],
      expect: [200, 202],
      where: this.refWhere(digest),
    });
    await res.body.dump();
  }

  /** Deletes a tag (OCI distribution 1.1; distribution 2.8 refuses with 400 DIGEST_INVALID). */
  async deleteManifestRef(tag: string): Promise<void> {
    this.checkRef(tag);
    const res = await this.client.send({
      method: "DELETE",
      url: `/v2/${this.name}/manifests/${tag}`,
      scopes: [repositoryScope(this.name, ["delete"])],
      expect: [200, 202],
      where: this.refWhere(tag),
    });
    await res.body.dump();
  }

  /** All tags, following the registry's Link pagination. */
  async listTags(opts: { pageSize?: number } = {}): Promise<string[]> {
    const tags: string[] = [];
    let url: string | undefined = `/v2/${this.name}/tags/list${opts.pageSize ? `?n=${opts.pageSize}` : ""}`;
    for (let pages = 0; url; pages++) {
      if (pages > 10_000)
        throw new RootstockError("REGISTRY", `${this.where}: tag list pagination does not end`);
      const res: Response = await this.client.send({
        method: "GET",
        url,
        scopes: this.pull(),
        expect: [200],
        where: this.where,
      });
      const text = (await readBounded(res.body, 16 * 1024 * 1024, this.where)).toString("utf8");
      let body: { tags?: unknown };
      try {
        body = JSON.parse(text);
      } catch {
        throw new RootstockError("INVALID_FORMAT", `${this.where}: tag list is not JSON`);
      }
      if (body.tags !== null && body.tags !== undefined) {
        if (!Array.isArray(body.tags) || body.tags.some((t) => typeof t !== "string")) {
          throw new RootstockError("INVALID_FORMAT", `${this.where}: tags: not an array of strings`);
        }
        tags.push(...(body.tags as string[]));
      }
      url = nextLink(headerValue(res.headers, "link"));
    }
    return tags;
  }

  // ---- blobs ----------------------------------------------------------------

  private blobUrl(digest: Digest): string {
    return `/v2/${this.name}/blobs/${digest}`;
  }

  /** The blob's size when the registry has it, else undefined. */
  async headBlob(digest: Digest): Promise<{ size: number } | undefined> {
    parseDigest(digest, `${this.where}: blob`);
    const res = await this.client.send({
      method: "HEAD",
      url: this.blobUrl(digest),
      scopes: this.pull(),
      expect: [200, 404],
      where: `${this.where}@${digest}`,
    });
    await res.body.dump();
    if (res.statusCode === 404) return undefined;
    const length = Number(headerValue(res.headers, "content-length"));
    return { size: Number.isSafeInteger(length) ? length : -1 };
  }

  /**
   * The blob's bytes as a stream, verified: the stream throws SIZE_MISMATCH or
   * DIGEST_MISMATCH at its end rather than ending quietly. A dropped connection is
   * resumed with a Range request from the last byte received (backoff between
   * attempts; the attempt budget resets whenever bytes arrive).
   */
  openBlob(digest: Digest, opts: OpenBlobOptions = {}): AsyncGenerator<Uint8Array> {
    // The stream checks size and digest at its end: marked so a store can skip hashing it again.
    // A consumer that accepts borrowed chunks gets a plain-http registry's body as
    // views of one reused buffer (http1.ts); others get copies.
    return lendingStream((lend) => markVerified(this.streamBlob(digest, opts, lend), digest));
  }

  private async *streamBlob(
    digest: Digest,
    opts: OpenBlobOptions,
    lend: { borrowed: boolean },
  ): AsyncGenerator<Uint8Array> {
    parseDigest(digest, `${this.where}: blob`);
    const where = `${this.where}@${digest}`;
    const offset = opts.offset ?? 0;
    const digester = opts.digester ?? new Digester();
    if (digester.size !== offset) {
      throw new RootstockError(
        "INVALID_ARGUMENT",
        `${where}: offset ${offset} needs a digester holding those ${offset} bytes (it holds ${digester.size})`,
      );
    }
    let size = opts.size;
    const progress = opts.progress ?? silentProgress;
    const taskId = `blob ${digest}`;
    progress({
      type: "start",
      id: taskId,
      label: `${this.name}@${digest.slice(7, 19)}`,
      total: size,
      unit: "bytes",
    });
    let position = offset;
    let failures = 0;
    while (size === undefined || position < size || position === offset) {
      const res = await this.client.send({
        method: "GET",
        url: this.blobUrl(digest),
        headers: position > 0 ? { range: `bytes=${position}-` } : {},
        scopes: this.pull(),
        expect: position > 0 ? [200, 206] : [200],
        where,
      });
      let skip = 0;
      if (res.statusCode === 206) {
        const got = parseContentRange(headerValue(res.headers, "content-range"));
        if (!got || got.start !== position) {
          discardBody(res.body);
          throw new RegistryError(
            where,
            206,
            undefined,
            `asked for bytes from ${position}, got Content-Range ${JSON.stringify(headerValue(res.headers, "content-range") ?? "")}`,
          );
        }
        size ??= got.total;
      } else {
        // 200: the whole blob again; skip what we already have.
        skip = position;
        const length = Number(headerValue(res.headers, "content-length"));
        if (Number.isSafeInteger(length)) {
          if (size !== undefined && length !== size) {
            discardBody(res.body);
            throw new RootstockError(
              "SIZE_MISMATCH",
              `${where}: expected ${size} bytes, registry sends ${length}`,
            );
          }
          size ??= length;
        }
      }
      let dropped: unknown;
      const body = res.body[Symbol.asyncIterator]();
      try {
        for (;;) {
          let next: IteratorResult<Uint8Array>;
          try {
            next = await body.next();
          } catch (err) {
            if (!isTransientError(err)) throw networkError(where, err);
            dropped = err;
            break;
          }
          if (next.done) break;
          let chunk: Uint8Array = next.value;
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          if (size !== undefined && position + chunk.length > size) {
            throw new RootstockError("SIZE_MISMATCH", `${where}: expected ${size} bytes, got more`);
          }
          digester.update(chunk);
          position += chunk.length;
          failures = 0;
          progress({ type: "advance", id: taskId, current: position, total: size });
          // A lent chunk goes on lent only to a consumer that accepted that.
          yield res.borrowed && !lend.borrowed ? Buffer.from(chunk) : chunk;
        }
      } finally {
        discardBody(res.body);
      }
      if (dropped === undefined && (size === undefined || position >= size)) break;
      // Dropped, or ended short of the size: resume from `position`.
      if (failures >= this.client.retries) {
        if (dropped !== undefined) throw networkError(`${where}: after ${failures + 1} attempts`, dropped);
        break; // the size check below reports the short stream
      }
      await sleep(backoffDelay(failures++, this.client.retryBaseDelayMs));
    }
    verifyDigest({ digest: digester.digest(), size: digester.size }, { digest, size }, where);
    progress({ type: "done", id: taskId });
  }

  /**
   * Byte ranges of a blob, each yielded once complete (in the order they finish,
   * which follows the blob's order within a request). Handles whatever the server
   * answers: 206 with one range, 206 `multipart/byteranges`, or 200 with the whole
   * blob (the needed bytes are cut out and the connection closed). A range the
   * blob does not hold (416) is a RegistryError; a server refusing several ranges
   * at once is asked one range at a time. Requests are issued one after another;
   * call this several times for parallel fetching.
   */
  async *getBlobRanges(
    digest: Digest,
    ranges: readonly ByteRange[],
    opts: BlobRangesOptions = {},
  ): AsyncGenerator<RangeBytes> {
    parseDigest(digest, `${this.where}: blob`);
    for (const req of planRangeRequests(ranges, opts)) {
      yield* this.fetchSpans(digest, req.spans);
    }
  }

  private async *fetchSpans(digest: Digest, spans: Span[]): AsyncGenerator<RangeBytes> {
    const where = `${this.where}@${digest}`;
    if (spans.length > 1 && this.client.multiRangeUnsupported) {
      for (const span of spans) yield* this.fetchSpans(digest, [span]);
      return;
    }
    let pending = spans;
    let failures = 0;
    while (pending.length > 0) {
      const res = await this.client.send({
        method: "GET",
        url: this.blobUrl(digest),
        headers: { range: rangeHeader(pending) },
        scopes: this.pull(),
        expect: [200, 206, 416, 501],
        where,
      });
      const status = res.statusCode;
      if ((status === 416 || status === 501) && pending.length > 1) {
        // zot answers 416 and GHCR 501 to several ranges: ask one at a time from now on.
        await res.body.dump();
        this.client.multiRangeUnsupported = true;
        for (const span of pending) yield* this.fetchSpans(digest, [span]);
        return;
      }
      if (status === 416 || status === 501) {
        const text = (await readBounded(res.body, 64 * 1024, where).catch(() => Buffer.alloc(0))).toString();
        const span = pending[0]!;
        throw new RegistryError(
          where,
          status,
          status === 416 ? "RANGE_NOT_SATISFIABLE" : undefined,
          `bytes ${span.start}-${span.end - 1}${text.includes("size") ? `: ${text.trim().slice(0, 80)}` : " not satisfiable"}`,
        );
      }
      const collectors = pending.map((span) => new SpanCollector(span));
      let dropped: unknown;
      try {
        for await (const done of this.readRangeResponse(res, collectors, where)) yield done;
      } catch (err) {
        if (!isTransientError(err)) throw err instanceof RootstockError ? err : networkError(where, err);
        dropped = err;
      } finally {
        discardBody(res.body);
      }
      const unfinished = collectors.filter((c) => !c.done);
      if (unfinished.length > 0 && dropped === undefined) {
        const missing = unfinished.map((c) => `${c.span.start}-${c.span.end - 1}`).join(", ");
        throw new RegistryError(where, status, undefined, `response lacks bytes ${missing}`);
      }
      if (unfinished.length === 0) return;
      // The connection dropped: ask again for the ranges not yet delivered.
      if (failures >= this.client.retries)
        throw networkError(`${where}: after ${failures + 1} attempts`, dropped);
      await sleep(backoffDelay(failures++, this.client.retryBaseDelayMs));
      pending = unfinished.map((c) => remainingSpan(c));
    }
  }

  /** Routes the bytes of a 200/206 answer into the span collectors; yields finished ranges. */
  private async *readRangeResponse(
    res: Response,
    collectors: SpanCollector[],
    where: string,
  ): AsyncGenerator<RangeBytes> {
    const contentType = headerValue(res.headers, "content-type");
    if (res.statusCode === 200) {
      // The whole blob: walk it, feed each span its bytes, stop once all are done.
      yield* feedSpans(res.body as AsyncIterable<Uint8Array>, 0, collectors);
      return;
    }
    const boundary = multipartBoundary(contentType);
    if (boundary === undefined) {
      // One range. A server may coalesce several asked ranges into one covering them.
      const raw = headerValue(res.headers, "content-range");
      const got = parseContentRange(raw);
      const first = collectors[0]!.span;
      const last = collectors[collectors.length - 1]!.span;
      const covers =
        got &&
        (collectors.length === 1
          ? contentRangeMatches(got, first)
          : got.start <= first.start &&
            (got.end >= last.end || (got.total !== undefined && got.end === got.total)));
      if (!got || !covers) {
        throw new RegistryError(
          where,
          206,
          undefined,
          `asked for ${rangeHeader(collectors.map((c) => c.span))}, got Content-Range ${JSON.stringify(raw ?? "")}`,
        );
      }
      yield* feedSpans(res.body as AsyncIterable<Uint8Array>, got.start, collectors, {
        end: got.end,
        tooLong: () => new RegistryError(where, 206, undefined, "body longer than its Content-Range"),
      });
      return;
    }
    // Several ranges: each part must answer one asked span exactly, once.
    let current: SpanCollector | undefined;
    for await (const event of parseByteranges(res.body, boundary, where)) {
      if (event.kind === "part") {
        current = collectors.find(
          (c) => c.expected === c.span.start && contentRangeMatches(event.range, c.span),
        );
        if (!current) {
          throw new RegistryError(
            where,
            206,
            undefined,
            `multipart answer has bytes ${event.range.start}-${event.range.end - 1}, not one of the asked ${rangeHeader(
              collectors.map((c) => c.span),
            )} (or sent twice)`,
          );
        }
        continue;
      }
      yield* current!.write(event.bytes);
    }
  }

  /**
   * Pushes a blob unless the registry has it: HEAD first, then a cross-repository
   * mount from `mountFrom`, then an upload (one PUT for small blobs, PATCH chunks
   * for large ones). The content is hashed while sent; a mismatch with `digest`
   * cancels the upload and nothing is committed.
   */
  async pushBlob(content: BlobContent, opts: PushBlobOptions): Promise<PushBlobResult> {
    const digest = parseDigest(opts.digest, `${this.where}: blob to push`);
    const where = `${this.where}@${digest}`;
    const existing = await this.headBlob(digest);
    if (existing && (existing.size === opts.size || existing.size < 0)) return "exists";

    let location: string | undefined;
    for (const from of opts.mountFrom ?? []) {
      if (from === this.name) continue;
      const res = await this.client.send({
        method: "POST",
        url: `/v2/${this.name}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`,
        scopes: [...this.push(), repositoryScope(from, ["pull"])],
        expect: [201, 202],
        where,
      });
      await res.body.dump();
      if (res.statusCode === 201) return "mounted";
      // 202: not mountable; the registry opened an upload session instead, use it.
      location = this.uploadLocation(res, where);
      break;
    }
    const progress = opts.progress ?? silentProgress;
    const taskId = `push ${digest}`;
    progress({
      type: "start",
      id: taskId,
      label: `${this.name}@${digest.slice(7, 19)}`,
      total: opts.size,
      unit: "bytes",
    });
    content = reopenable(content, where);
    for (let restarts = 0; ; restarts++) {
      const session = { location: location ?? (await this.startUpload(where)) };
      location = undefined;
      try {
        const monolithicMax = opts.monolithicMax ?? 16 * 1024 * 1024;
        if (opts.size <= monolithicMax) {
          const bytes = content instanceof Uint8Array ? content : await collect(content(), opts.size, where);
          verifyDigest(
            { digest: sha256(bytes), size: bytes.length },
            { digest, size: opts.size },
            `${where}: content`,
          );
          await this.finishUpload(session.location, digest, bytes, where);
        } else {
          const advance = (n: number) =>
            progress({ type: "advance", id: taskId, current: n, total: opts.size });
          if (opts.chunkSize !== undefined) await this.uploadChunks(session, content, opts, where, advance);
          else
            await this.uploadStreamed(
              session,
              content,
              { digest, size: opts.size },
              where,
              advance,
              opts.contentVerified ?? false,
            );
          await this.finishUpload(session.location, digest, undefined, where);
        }
        break;
      } catch (err) {
        await this.cancelUpload(session.location, where);
        if (!isSessionLost(err)) throw err;
        // A final PUT retried after it had committed finds its session gone: the blob is there.
        if ((await this.headBlob(digest))?.size === opts.size) break;
        // distribution drops a session whose PATCH was cut mid-body (its signed state no
        // longer matches the data): start a new one, the content is re-readable.
        if (restarts >= 2) throw err;
      }
    }
    progress({ type: "done", id: taskId });
    return "uploaded";
  }

  private async startUpload(where: string): Promise<string> {
    const res = await this.client.send({
      method: "POST",
      url: `/v2/${this.name}/blobs/uploads/`,
      scopes: this.push(),
      expect: [202],
      where,
    });
    await res.body.dump();
    return this.uploadLocation(res, where);
  }

  private uploadLocation(res: Response, where: string): string {
    const location = headerValue(res.headers, "location");
    if (!location)
      throw new RegistryError(where, res.statusCode, undefined, "upload started without a Location");
    return location;
  }

  private async finishUpload(location: string, digest: Digest, body: Uint8Array | undefined, where: string) {
    const url = withQuery(location, "digest", digest);
    const res = await this.client.send({
      method: "PUT",
      url,
      headers: { "content-type": "application/octet-stream", "content-length": String(body?.length ?? 0) },
      body: body ?? new Uint8Array(0),
      scopes: this.push(),
      expect: [201, 204],
      where,
    });
    await res.body.dump();
    const stored = headerValue(res.headers, "docker-content-digest");
    if (stored && isDigest(stored) && stored !== digest) {
      throw new RootstockError("DIGEST_MISMATCH", `${where}: registry stored the blob as ${stored}`);
    }
  }

  private async cancelUpload(location: string, where: string): Promise<void> {
    try {
      const res = await this.client.send({
        method: "DELETE",
        url: location,
        scopes: this.push(),
        expect: [200, 202, 204, 404],
        where,
        retry: false,
      });
      await res.body.dump();
    } catch {
      // Best effort: the registry purges stale uploads itself.
    }
  }

  /** PATCHes the content in chunks of `chunkSize`; returns the Location for the final PUT. */
  private async uploadChunks(
    session: { location: string },
    content: BlobContent,
    opts: { digest?: Digest; size?: number; chunkSize?: number },
    where: string,
    advance: (sent: number) => void,
  ): Promise<{ digest: Digest; size: number }> {
    const chunkSize = opts.chunkSize ?? 16 * 1024 * 1024;
    const digester = new Digester();
    let sent = 0;
    const source = content instanceof Uint8Array ? [content] : content();
    for await (const chunk of rechunk(source, chunkSize)) {
      digester.update(chunk);
      if (opts.size !== undefined && digester.size > opts.size) {
        throw new RootstockError("SIZE_MISMATCH", `${where}: content: expected ${opts.size} bytes, got more`);
      }
      session.location = await this.patchChunk(session.location, chunk, sent, where);
      sent += chunk.length;
      advance(sent);
    }
    const actual = { digest: digester.digest(), size: digester.size };
    if (opts.digest) verifyDigest(actual, { digest: opts.digest, size: opts.size }, `${where}: content`);
    return actual;
  }

  /**
   * Uploads a stream whose digest is not known in advance (PATCH chunks, digest
   * computed on the way, committed with it). No HEAD skip: the digest comes last.
   */
  async pushStream(
    source: AsyncIterable<Uint8Array>,
    opts: { chunkSize?: number; progress?: ProgressSink; digest?: Digest; size?: number } = {},
  ): Promise<{ digest: Digest; size: number }> {
    const where = `${this.where} (upload)`;
    const session = { location: await this.startUpload(where) };
    const progress = opts.progress ?? silentProgress;
    const taskId = `push ${this.name} ${session.location}`;
    progress({ type: "start", id: taskId, label: `${this.name} (upload)`, unit: "bytes" });
    try {
      const done = await this.uploadChunks(
        session,
        () => source,
        opts,
        where,
        (n) => progress({ type: "advance", id: taskId, current: n }),
      );
      await this.finishUpload(session.location, done.digest, undefined, `${this.where}@${done.digest}`);
      progress({ type: "done", id: taskId });
      return { digest: done.digest, size: done.size };
    } catch (err) {
      await this.cancelUpload(session.location, where);
      throw err;
    }
  }

  /**
   * The whole blob in one streamed PATCH, hashed on the way. After a dropped
   * connection the session is asked how much it holds, the content reopened and
   * the rest sent from there; the hash always covers every byte from the start.
   */
  private async uploadStreamed(
    session: { location: string },
    content: BlobContent,
    expected: { digest: Digest; size: number },
    where: string,
    advance: (sent: number) => void,
    contentVerified: boolean,
  ): Promise<void> {
    const { size } = expected;
    let from = 0; // bytes the registry holds
    for (let failures = 0; ; ) {
      const digester = contentVerified ? new TrustedDigester(expected.digest) : new Digester();
      const skip = from;
      const inTurn = await this.client.writesBodiesInTurn(session.location);
      const body = async function* (): AsyncGenerator<Uint8Array> {
        const source = content instanceof Uint8Array ? [content] : content();
        // Each piece is hashed, then written before the next is asked for (undici may
        // hold it longer: it reads its body ahead).
        if (inTurn) acceptBorrowedChunks(source);
        for await (const piece of source) {
          const before = digester.size;
          digester.update(piece);
          if (digester.size > size) {
            throw new RootstockError("SIZE_MISMATCH", `${where}: content: expected ${size} bytes, got more`);
          }
          if (digester.size <= skip) continue;
          yield before >= skip ? piece : piece.subarray(skip - before);
          advance(digester.size);
        }
        if (digester.size !== size) {
          throw new RootstockError(
            "SIZE_MISMATCH",
            `${where}: content: expected ${size} bytes, got ${digester.size}`,
          );
        }
      };
      if (from === size && size > 0) {
        // Everything arrived before the drop: only the hash is left to check.
        for await (const _ of body()) {
          // hashes, yields nothing
        }
        verifyDigest({ digest: digester.digest(), size: digester.size }, expected, `${where}: content`);
        return;
      }
      try {
        const res = await this.client.send({
          method: "PATCH",
          url: session.location,
          headers: {
            "content-type": "application/octet-stream",
            "content-range": `${from}-${size - 1}`,
            "content-length": String(size - from),
          },
          body: body(),
          scopes: this.push(),
          expect: [202],
          where,
          retry: false,
        });
        await res.body.dump();
        session.location = this.uploadLocation(res, where);
        verifyDigest({ digest: digester.digest(), size: digester.size }, expected, `${where}: content`);
        return;
      } catch (err) {
        const retryable =
          isTransientError((err as { cause?: unknown }).cause ?? err) ||
          (err instanceof RegistryError && err.status >= 500);
        if (!retryable || failures >= this.client.retries) throw err;
        await sleep(backoffDelay(failures++, this.client.retryBaseDelayMs));
        const status = await this.uploadStatus(session.location, where);
        session.location = status.location;
        if (status.received > size) {
          throw new RegistryError(
            where,
            204,
            undefined,
            `upload session holds ${status.received} bytes, more than ${size}`,
          );
        }
        from = status.received;
      }
    }
  }

  /** One PATCH; after a dropped connection, asks the session how much arrived and sends the rest. */
  private async patchChunk(
    location: string,
    chunk: Uint8Array,
    start: number,
    where: string,
  ): Promise<string> {
    let offset = 0; // bytes of this chunk the registry already has
    for (let failures = 0; ; ) {
      const part = chunk.subarray(offset);
      const from = start + offset;
      try {
        const res = await this.client.send({
          method: "PATCH",
          url: location,
          headers: {
            "content-type": "application/octet-stream",
            "content-range": `${from}-${from + part.length - 1}`,
            "content-length": String(part.length),
          },
          body: part,
          scopes: this.push(),
          expect: [202],
          where,
          retry: false,
        });
        await res.body.dump();
        const next = this.uploadLocation(res, where);
        const range = headerValue(res.headers, "range");
        const end = range
          ? Number(/^(?:bytes=)?0-(\d+)$/.exec(range)?.[1] ?? Number.NaN) + 1
          : from + part.length;
        if (end !== from + part.length) {
          throw new RegistryError(
            where,
            202,
            undefined,
            `upload holds ${end} bytes after a PATCH, expected ${from + part.length}`,
          );
        }
        return next;
      } catch (err) {
        const retryable =
          isTransientError((err as { cause?: unknown }).cause ?? err) ||
          (err instanceof RegistryError && err.status >= 500);
        if (!retryable || failures >= this.client.retries) throw err;
        await sleep(backoffDelay(failures++, this.client.retryBaseDelayMs));
        const status = await this.uploadStatus(location, where);
        location = status.location;
        if (status.received < start || status.received > start + chunk.length) {
          throw new RegistryError(
            where,
            204,
            undefined,
            `upload session holds ${status.received} bytes, expected ${start}..${start + chunk.length}`,
          );
        }
        offset = status.received - start;
        if (offset === chunk.length) return location;
      }
    }
  }

  private async uploadStatus(
    location: string,
    where: string,
  ): Promise<{ location: string; received: number }> {
    const res = await this.client.send({
      method: "GET",
      url: location,
      scopes: this.push(),
      expect: [204],
      where,
    });
    await res.body.dump();
    const range = headerValue(res.headers, "range");
    const m = range ? /^(?:bytes=)?0-(\d+)$/.exec(range) : undefined;
    return { location: headerValue(res.headers, "location") ?? location, received: m ? Number(m[1]) + 1 : 0 };
  }

  /** Deletes a blob (registries may refuse: UNSUPPORTED). */
  async deleteBlob(digest: Digest): Promise<void> {
    parseDigest(digest, `${this.where}: blob to delete`);
    const res = await this.client.send({
      method: "DELETE",
      url: this.blobUrl(digest),
      scopes: [repositoryScope(this.name, ["delete"])],
      expect: [200, 202],
      where: `${this.where}@${digest}`,
    });
    await res.body.dump();
  }
}

/**
 * Guards an opener that hands back the same one-shot stream twice: resuming or
 * restarting an upload needs the content from its start again.
 */
function reopenable(content: BlobContent, where: string): BlobContent {
  if (content instanceof Uint8Array) return content;
  const seen = new WeakSet<object>();
  return () => {
    const stream = content();
    if (seen.has(stream)) {
      throw new RootstockError(
        "NETWORK",
        `${where}: the upload was interrupted and its content cannot be read again (pass an opener returning a fresh stream)`,
      );
    }
    seen.add(stream);
    return stream;
  };
}

/** The registry forgot or invalidated an upload session (after an outage, or a cut PATCH). */
function isSessionLost(err: unknown): boolean {
  return (
    err instanceof RegistryError &&
    (err.ociCode === "BLOB_UPLOAD_INVALID" || err.ociCode === "BLOB_UPLOAD_UNKNOWN" || err.status === 404)
  );
}

/** The span of a collector's ranges still missing (its finished ranges are not asked again). */
function remainingSpan(c: SpanCollector): Span {
  const ranges = c.span.ranges.filter((r) => r.offset + r.length > c.expected);
  const start = Math.min(...ranges.map((r) => r.offset));
  return { start, end: c.span.end, ranges };
}

function manifestMediaType(contentType: string | undefined, bytes: Uint8Array): string {
  const header = contentType?.split(";")[0]?.trim();
  if (
    header &&
    header !== "application/json" &&
    header !== "text/plain" &&
    header !== "application/octet-stream"
  ) {
    return header;
  }
  try {
    const doc = JSON.parse(Buffer.from(bytes).toString("utf8")) as {
      mediaType?: unknown;
      manifests?: unknown;
    };
    if (typeof doc.mediaType === "string") return doc.mediaType;
    return Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  } catch {
    return header ?? "application/octet-stream";
  }
}

function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
  return m?.[1];
}

function withQuery(location: string, key: string, value: string): string {
  const url = new URL(location, "http://placeholder");
  url.searchParams.set(key, value);
  return /^https?:\/\//.test(location) ? url.toString() : `${url.pathname}${url.search}`;
}

async function collect(source: AsyncIterable<Uint8Array>, size: number, where: string): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let at = 0;
  for await (const chunk of source) {
    if (at + chunk.length > size) {
      throw new RootstockError("SIZE_MISMATCH", `${where}: content: expected ${size} bytes, got more`);
    }
    out.set(chunk, at);
    at += chunk.length;
  }
  if (at !== size)
    throw new RootstockError("SIZE_MISMATCH", `${where}: content: expected ${size} bytes, got ${at}`);
  return out;
}

/** Regroups a stream into chunks of exactly `size` bytes (the last may be shorter). */
async function* rechunk(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, size: number) {
  let parts: Uint8Array[] = [];
  let held = 0;
  for await (const piece of source) {
    let chunk = piece;
    while (chunk.length > 0) {
      const take = Math.min(size - held, chunk.length);
      parts.push(chunk.subarray(0, take));
      held += take;
      chunk = chunk.subarray(take);
      if (held === size) {
        yield Buffer.concat(parts, held);
        parts = [];
        held = 0;
      }
    }
  }
  if (held > 0) yield Buffer.concat(parts, held);
}

/**
 * Cuts the spans `collectors` wait for (in blob order) out of a body whose first byte
 * is blob byte `start`; returns as soon as every span is complete. With `limit`, a body
 * running past `limit.end` is refused.
 */
async function* feedSpans(
  body: AsyncIterable<Uint8Array>,
  start: number,
  collectors: SpanCollector[],
  limit?: { end: number; tooLong: () => Error },
): AsyncGenerator<RangeBytes> {
  let position = start;
  let index = 0;
  for await (const chunk of body) {
    const chunkEnd = position + chunk.length;
    while (index < collectors.length) {
      const c = collectors[index]!;
      const from = Math.max(c.expected, position);
      const to = Math.min(c.span.end, chunkEnd);
      if (from < to) yield* c.write(chunk.subarray(from - position, to - position));
      if (c.expected >= c.span.end) index++;
      else break;
    }
    position = chunkEnd;
    if (limit && position > limit.end) throw limit.tooLong();
    if (index >= collectors.length) return;
  }
}
