/**
 * Bulk transfers: blob GETs and uploads over plain HTTP/1.1 without a fresh buffer
 * per chunk. A response body is read into one reused buffer per connection (the
 * socket's `onread` buffer) and handed out as views, the socket paused until the
 * consumer asks for the next chunk; a request body is written chunk by chunk, each
 * write finished before the next chunk is asked for, so its source can lend them
 * too. undici reads every 64 KiB into a fresh buffer; on a VM where a fresh page
 * costs a fault, receiving a 138 MB layer that way took 0.8–1.2 s of CPU against
 * 0.25 s here.
 *
 * Only for `http:` origins (loopback registries, farm caches): Node's TLS socket
 * keeps calling `onread` after it is told to pause, so a view could be overwritten
 * before it is consumed. Only responses framed by Content-Length are taken; anything
 * else (chunked, read-to-close) answers `undefined`, and the caller asks again
 * through its general client.
 */
import net from "node:net";

export interface BulkResponse {
  statusCode: number;
  /** Lower-case names; a repeated header is an array, as undici gives it. */
  headers: Record<string, string | string[]>;
  body: BorrowedBody;
}

/**
 * A response body whose chunks are borrowed: each is valid until the next call to
 * the iterator's `next()`, when the buffer behind it is read into again.
 */
export interface BorrowedBody extends AsyncIterable<Uint8Array> {
  readonly destroyed: boolean;
  destroy(): void;
  dump(): Promise<void>;
  on(event: "error", listener: () => void): unknown;
}

export interface BulkOptions {
  /** Connections per origin at once; further requests wait. */
  connections: number;
  connectMs: number;
  headersMs: number;
  /** Longest silence inside a body while the consumer is waiting for bytes. */
  bodyMs: number;
}

const READ_BUFFER = 256 * 1024;
const MAX_HEAD = 64 * 1024;
const IDLE_MS = 30_000;

/** An error with a Node-style code, so the client's transient-error rules apply. */
function connectionError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

type Waiter = { resolve: (chunk: Uint8Array | undefined) => void; reject: (err: Error) => void };

type Head = { status: number; headers: Record<string, string | string[]> };

/** One keep-alive connection: at most one exchange at a time. */
class BulkConnection {
  readonly socket: net.Socket;
  /** True once a response has been read on it: a failure before any answer may then be a stale keep-alive. */
  reused = false;
  private phase: "connecting" | "idle" | "head" | "body" | "dead" = "connecting";
  private head: Buffer[] = [];
  private headSize = 0;
  private onHead: ((head: Head) => void) | undefined;
  private failHead: ((err: Error) => void) | undefined;
  private keepAlive = true;
  private remaining = 0;
  /** Every byte of the body has been read (some may still wait in `pending`). */
  private complete = false;
  private pending: Uint8Array | undefined;
  private waiter: Waiter | undefined;
  private failure: Error | undefined;
  private paused = false;
  /** A request body is being written. */
  private sending = false;
  /** The request in progress has a body (and so cannot be sent again). */
  private hadBody = false;

  constructor(
    host: string,
    port: number,
    private readonly options: BulkOptions,
    private readonly release: (conn: BulkConnection, keep: boolean) => void,
  ) {
    const buffer = Buffer.allocUnsafe(READ_BUFFER);
    this.socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: { buffer, callback: (n: number, buf: Buffer) => this.onRead(buf.subarray(0, n)) },
    });
    this.socket.setTimeout(options.connectMs);
    this.socket.on("timeout", () => {
      if (this.phase === "idle") this.fail(connectionError("ECONNRESET", "idle connection closed"));
      else this.fail(connectionError("ETIMEDOUT", `${this.phase === "body" ? "body" : "answer"} timed out`));
    });
    this.socket.on("connect", () => {
      if (this.phase === "connecting") this.phase = "idle";
    });
    this.socket.on("error", (err) => this.fail(err));
    this.socket.on("end", () => this.fail(connectionError("ECONNRESET", "connection closed by the server")));
    this.socket.on("close", () => this.fail(connectionError("ECONNRESET", "connection closed")));
  }

  get usable(): boolean {
    return this.phase === "idle" && !this.socket.destroyed;
  }

  /**
   * Sends a request and resolves with the response head; the response body follows
   * through `next()`. A request body is written chunk by chunk, each write finished
   * before the next chunk is asked for (so the body may lend its chunks); an answer
   * that comes before the body is all sent stops the sending.
   */
  request(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: { chunks: AsyncIterable<Uint8Array>; length: number },
  ): Promise<Head> {
    return new Promise((resolve, reject) => {
      for (const [name, value] of Object.entries(headers)) {
        if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) {
          reject(connectionError("ERR_INVALID_CHAR", `header ${name}: line break in its value`));
          return;
        }
      }
      if (this.phase === "dead") {
        reject(this.failure ?? connectionError("ECONNRESET", "connection closed"));
        return;
      }
      this.phase = "head";
      this.hadBody = body !== undefined;
      this.head = [];
      this.headSize = 0;
      this.complete = false;
      this.onHead = resolve;
      this.failHead = reject;
      this.socket.ref();
      this.socket.setTimeout(this.options.headersMs);
      let text = `${method} ${path} HTTP/1.1\r\n`;
      for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
      this.socket.write(`${text}\r\n`, "latin1");
      if (body) this.sendBody(body.chunks, body.length).catch((err) => this.fail(err as Error));
    });
  }

  private async sendBody(chunks: AsyncIterable<Uint8Array>, length: number): Promise<void> {
    let sent = 0;
    this.sending = true;
    try {
      for await (const chunk of chunks) {
        // Answered already (an error before the body was read): stop; the connection
        // cannot carry another request after a body cut short.
        if (this.phase !== "head") {
          this.keepAlive = false;
          return;
        }
        sent += chunk.length;
        if (sent > length)
          throw connectionError("ERR_BODY_LENGTH", `request body longer than its ${length} bytes`);
        await new Promise<void>((resolve, reject) =>
          this.socket.write(chunk, (err) => (err ? reject(err) : resolve())),
        );
      }
      if (sent < length && this.phase === "head") {
        throw connectionError("ERR_BODY_LENGTH", `request body ended at ${sent} of its ${length} bytes`);
      }
    } finally {
      this.sending = false;
    }
  }

  private onRead(bytes: Buffer): boolean {
    if (this.phase === "head") return this.readHead(bytes);
    if (this.phase === "body" && !this.complete) return this.deliver(bytes);
    // Bytes nobody asked for: the stream is out of step.
    this.fail(connectionError("ERR_UNEXPECTED_DATA", "bytes outside any response"));
    return false;
  }

  private readHead(bytes: Buffer): boolean {
    // The head is small: copy it out of the read buffer (which the next read reuses).
    this.head.push(Buffer.from(bytes));
    this.headSize += bytes.length;
    const all = this.head.length === 1 ? (this.head[0] as Buffer) : Buffer.concat(this.head, this.headSize);
    const end = all.indexOf("\r\n\r\n");
    if (end < 0) {
      if (this.headSize > MAX_HEAD)
        this.fail(connectionError("ERR_HEAD_TOO_LARGE", "response head over 64 KiB"));
      return true;
    }
    this.head = [];
    let head: Head & { http10: boolean };
    try {
      head = parseHead(all.toString("latin1", 0, end));
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    const length = head.headers["content-length"];
    const framed =
      head.headers["transfer-encoding"] === undefined && typeof length === "string" && /^\d+$/.test(length);
    const connection = String(head.headers.connection ?? "").toLowerCase();
    this.keepAlive = head.http10 ? connection.includes("keep-alive") : !connection.includes("close");
    const onHead = this.onHead as (head: Head) => void;
    this.onHead = undefined;
    this.failHead = undefined;
    if (!framed && !this.hadBody) {
      // Not ours to read (chunked, or until close): the caller asks its general client.
      this.phase = "dead";
      this.socket.destroy();
      onHead({ status: -1, headers: head.headers });
      return false;
    }
    if (!framed) {
      // The answer to an upload cannot be asked again (its body was read once): its
      // status and headers stand, its body (an error text at most) is dropped.
      this.keepAlive = false;
    }
    this.phase = "body";
    this.remaining = framed ? Number(length) : 0;
    this.complete = this.remaining === 0;
    this.socket.setTimeout(this.options.bodyMs);
    if (!framed) {
      onHead({ status: head.status, headers: head.headers });
      return false;
    }
    // Body bytes that came with the head: all in this read (the head did not end before it).
    const rest = bytes.subarray(bytes.length - (all.length - (end + 4)));
    onHead({ status: head.status, headers: head.headers });
    if (rest.length === 0) return true;
    if (this.complete) {
      this.fail(connectionError("ERR_UNEXPECTED_DATA", "bytes after the response"));
      return false;
    }
    return this.deliver(rest);
  }

  /** Hands a view of the read buffer to the consumer and pauses until it asks again. */
  private deliver(bytes: Buffer): boolean {
    if (bytes.length > this.remaining) {
      this.fail(connectionError("ERR_UNEXPECTED_DATA", "more bytes than Content-Length"));
      return false;
    }
    this.remaining -= bytes.length;
    this.complete = this.remaining === 0;
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter.resolve(bytes);
    else this.pending = bytes;
    this.paused = true;
    // No timeout while the consumer holds the chunk: its pace is not the server's.
    this.socket.setTimeout(0);
    return false;
  }

  /** The next body chunk (valid until the following call), or undefined at its end. */
  next(): Promise<Uint8Array | undefined> {
    if (this.pending) {
      const chunk = this.pending;
      this.pending = undefined;
      return Promise.resolve(chunk);
    }
    if (this.complete) {
      this.finish();
      return Promise.resolve(undefined);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.phase !== "body") return Promise.resolve(undefined);
    if (this.paused) {
      // The consumer is done with the last view: the buffer may be read into again.
      this.paused = false;
      this.socket.setTimeout(this.options.bodyMs);
      this.socket.resume();
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The body was read to its end: back to the pool, or closed. */
  private finish(): void {
    if (this.phase !== "body") return;
    if (!this.keepAlive || this.sending) {
      this.fail(connectionError("ECONNRESET", "closed after its response"));
      return;
    }
    this.phase = "idle";
    this.reused = true;
    this.paused = false;
    this.socket.setTimeout(IDLE_MS);
    this.socket.unref();
    // Read on while idle so a close by the server is noticed.
    this.socket.resume();
    this.release(this, true);
  }

  /** Drops the connection unless its body was read to the end: unread bytes cannot be skipped cheaply. */
  abandon(): void {
    if (this.complete && !this.pending) this.finish();
    else this.fail(connectionError("ERR_ABORTED", "body abandoned"));
  }

  private fail(err: Error): void {
    if (this.phase === "dead") return;
    this.phase = "dead";
    // A body already read whole stays whole: a close after it is no failure.
    if (!this.complete) this.failure ??= err;
    this.socket.destroy();
    const failHead = this.failHead;
    this.onHead = undefined;
    this.failHead = undefined;
    failHead?.(err);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(err);
    this.release(this, false);
  }
}

/** Parses a status line and header lines (no continuation lines: obsolete and refused). */
export function parseHead(text: string): Head & { http10: boolean } {
  const lines = text.split("\r\n");
  const status = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!status)
    throw connectionError(
      "ERR_BAD_STATUS_LINE",
      `not an HTTP/1.1 status line: ${JSON.stringify(lines[0]?.slice(0, 80))}`,
    );
  const headers: Record<string, string | string[]> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) {
      throw connectionError("ERR_BAD_HEADER", `not a header line: ${JSON.stringify(line.slice(0, 80))}`);
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers[name];
    headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return { status: Number(status[2]), headers, http10: status[1] === "0" };
}

/** Keep-alive connections per origin for bulk GETs, at most `connections` busy at once. */
export class BulkPool {
  private readonly idle = new Map<string, BulkConnection[]>();
  private readonly busy = new Map<string, number>();
  private readonly queue = new Map<string, (() => void)[]>();
  private closed = false;

  constructor(private readonly options: BulkOptions) {}

  /**
   * Sends `method url` (http: only) with an optional body of known length. Resolves
   * with the response, or undefined when it is not framed by Content-Length (the
   * caller then asks through its general client). Throws connection errors with
   * Node-style codes (ECONNRESET, ETIMEDOUT, …), and whatever the body throws.
   */
  async request(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body?: { chunks: AsyncIterable<Uint8Array>; length: number },
  ): Promise<BulkResponse | undefined> {
    if (url.protocol !== "http:") throw new Error(`bulk transfers are for http: only, not ${url.protocol}`);
    const origin = url.host;
    await this.acquire(origin);
    let released = false;
    const done = () => {
      if (released) return;
      released = true;
      this.releaseSlot(origin);
    };
    const target = `${url.pathname}${url.search}`;
    const all = { host: url.host, ...headers, ...(body ? { "content-length": String(body.length) } : {}) };
    try {
      for (;;) {
        const conn = this.take(url);
        let head: Head;
        try {
          head = await conn.request(method, target, all, body);
        } catch (err) {
          // A kept-alive connection the server had closed: once more on a new one. Not
          // with a body, which is read once (the upload code resumes from the session).
          if (conn.reused && !body) continue;
          throw err;
        }
        if (head.status < 0) {
          done();
          return undefined;
        }
        return { statusCode: head.status, headers: head.headers, body: borrowedBody(conn, done) };
      }
    } catch (err) {
      done();
      throw err;
    }
  }

  get(url: URL, headers: Record<string, string>): Promise<BulkResponse | undefined> {
    return this.request("GET", url, headers);
  }

  private take(url: URL): BulkConnection {
    const list = this.idle.get(url.host);
    for (let conn = list?.pop(); conn; conn = list?.pop()) if (conn.usable) return conn;
    return new BulkConnection(
      url.hostname.replace(/^\[|\]$/g, ""),
      Number(url.port || 80),
      this.options,
      (c, keep) => this.returned(url.host, c, keep),
    );
  }

  private returned(origin: string, conn: BulkConnection, keep: boolean): void {
    const list = this.idle.get(origin) ?? [];
    const at = list.indexOf(conn);
    if (at >= 0) list.splice(at, 1);
    if (keep && !this.closed) list.push(conn);
    this.idle.set(origin, list);
  }

  private async acquire(origin: string): Promise<void> {
    const busy = this.busy.get(origin) ?? 0;
    if (busy < this.options.connections) {
      this.busy.set(origin, busy + 1);
      return;
    }
    await new Promise<void>((resolve) => {
      const q = this.queue.get(origin) ?? [];
      q.push(resolve);
      this.queue.set(origin, q);
    });
  }

  private releaseSlot(origin: string): void {
    const next = this.queue.get(origin)?.shift();
    if (next) next();
    else this.busy.set(origin, (this.busy.get(origin) ?? 1) - 1);
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const conn of list) conn.socket.destroy();
    this.idle.clear();
  }
}

function borrowedBody(conn: BulkConnection, release: () => void): BorrowedBody {
  let destroyed = false;
  let iterating = false;
  const end = () => {
    if (destroyed) return;
    destroyed = true;
    release();
  };
  const body: BorrowedBody = {
    get destroyed() {
      return destroyed;
    },
    destroy() {
      if (destroyed) return;
      conn.abandon();
      end();
    },
    async dump() {
      try {
        while ((await conn.next()) !== undefined) {}
      } finally {
        end();
      }
    },
    on() {
      return body;
    },
    [Symbol.asyncIterator]() {
      if (iterating) throw new Error("a bulk body is read once");
      iterating = true;
      return {
        async next(): Promise<IteratorResult<Uint8Array>> {
          if (destroyed) return { done: true, value: undefined };
          let chunk: Uint8Array | undefined;
          try {
            chunk = await conn.next();
          } catch (err) {
            end();
            throw err;
          }
          if (chunk === undefined) {
            end();
            return { done: true, value: undefined };
          }
          return { done: false, value: chunk };
        },
        async return(): Promise<IteratorResult<Uint8Array>> {
          body.destroy();
          return { done: true, value: undefined };
        },
      };
    },
  };
  return body;
}
