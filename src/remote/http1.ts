/**
 * Our HTTP/1.1 client for plain-http registries (loopback registries, farm caches),
 * where undici's costs are measured to dominate: loading it takes ~0.15 s at every
 * start, and it reads every 64 KiB of a body into a fresh buffer, which on a VM
 * where a fresh page costs a fault took 0.8–1.2 s of CPU for a 138 MB layer
 * against 0.25 s here. https stays on undici (Node's TLS socket keeps calling
 * `onread` after it is told to pause, which lending needs).
 *
 * Response bodies are read into one reused buffer per connection (the socket's
 * `onread` buffer) and handed out as views, the socket paused until the consumer
 * asks for the next chunk: chunks are borrowed, valid until the next read.
 * Request bodies are written chunk by chunk, each write finished before the next
 * chunk is asked for, so their source may lend its chunks too. Framing: HEAD and
 * 1xx/204/304 carry no body; then Transfer-Encoding: chunked, Content-Length, or
 * (HTTP/1.0 style) the rest of the connection.
 */
import net from "node:net";

export interface Http1Response {
  statusCode: number;
  borrowed: true;
  /** Lower-case names; a repeated header is an array, as undici gives it. */
  headers: Record<string, string | string[]>;
  body: ResponseBody;
}

/**
 * A response body, as undici's also is. Here its chunks are borrowed: each is valid
 * until the next call to the iterator's `next()`, when the buffer behind it is read
 * into again.
 */
export interface ResponseBody extends AsyncIterable<Uint8Array> {
  readonly destroyed: boolean;
  destroy(): void;
  dump(): Promise<void>;
  on(event: "error", listener: () => void): unknown;
}

/** A request body: bytes, or a stream of declared length (read once, never resent). */
export type Http1Body = Uint8Array | string | { chunks: AsyncIterable<Uint8Array>; length: number };

export interface Http1Options {
  /** Connections per origin at once; further requests wait. */
  connections: number;
  connectMs: number;
  headersMs: number;
  /** Longest silence inside a body while the consumer is waiting for bytes. */
  bodyMs: number;
}

const READ_BUFFER = 256 * 1024;
const MAX_HEAD = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
const IDLE_MS = 30_000;

/** An error with a Node-style code, so the client's transient-error rules apply. */
function connectionError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

type Head = { status: number; headers: Record<string, string | string[]> };
type Waiter = { resolve: (chunk: Uint8Array | undefined) => void; reject: (err: Error) => void };

/** How the body of the response being read ends. */
type Framing =
  | { kind: "length"; remaining: number }
  | { kind: "chunked"; state: "size" | "data" | "data-end" | "trailer"; line: string; left: number }
  | { kind: "close" };

/** One keep-alive connection: at most one exchange at a time. */
class Http1Connection {
  readonly socket: net.Socket;
  /** True once a response has been read on it: a failure before any answer may then be a stale keep-alive. */
  reused = false;
  private phase: "connecting" | "idle" | "head" | "body" | "dead" = "connecting";
  private method = "GET";
  private head: Buffer[] = [];
  private headSize = 0;
  private onHead: ((head: Head) => void) | undefined;
  private failHead: ((err: Error) => void) | undefined;
  private keepAlive = true;
  private framing: Framing = { kind: "close" };
  /** Every byte of the body has been read (some may still wait in `pieces`). */
  private complete = false;
  /** Body bytes read but not yet handed out: views of the read buffer. */
  private pieces: Uint8Array[] = [];
  private waiter: Waiter | undefined;
  private failure: Error | undefined;
  private paused = false;
  /** A request body is being written. */
  private sending = false;

  constructor(
    host: string,
    port: number,
    private readonly options: Http1Options,
    private readonly release: (conn: Http1Connection, keep: boolean) => void,
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
    this.socket.on("end", () => this.ended());
    this.socket.on("close", () => this.ended());
  }

  get usable(): boolean {
    return this.phase === "idle" && !this.socket.destroyed;
  }

  /**
   * Sends a request and resolves with the response head; the response body follows
   * through `next()`. A streamed body is written chunk by chunk, each write finished
   * before the next chunk is asked for; an answer that comes before the body is all
   * sent stops the sending.
   */
  request(method: string, target: string, headers: Record<string, string>, body?: Http1Body): Promise<Head> {
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
      this.method = method;
      this.head = [];
      this.headSize = 0;
      this.complete = false;
      this.pieces = [];
      this.onHead = resolve;
      this.failHead = reject;
      this.socket.ref();
      this.socket.setTimeout(this.options.headersMs);
      const bytes =
        typeof body === "string" ? Buffer.from(body) : body instanceof Uint8Array ? body : undefined;
      const length = bytes ? bytes.length : body ? body.length : undefined;
      let text = `${method} ${target} HTTP/1.1\r\n`;
      for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
      if (length !== undefined) text += `content-length: ${length}\r\n`;
      this.socket.write(`${text}\r\n`, "latin1");
      if (bytes && bytes.length > 0) this.socket.write(bytes);
      else if (body && typeof body === "object" && !(body instanceof Uint8Array)) {
        this.sendBody(body.chunks, body.length).catch((err) => this.fail(err as Error));
      }
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
        if (sent > length) {
          throw connectionError("ERR_BODY_LENGTH", `request body longer than its ${length} bytes`);
        }
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
    if (this.phase === "body" && !this.complete) return this.readBody(bytes);
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
    // Body bytes that came with the head: all in this read (the head did not end before it).
    const rest = bytes.subarray(bytes.length - (all.length - (end + 4)));
    let head: Head & { http10: boolean };
    try {
      head = parseHead(all.toString("latin1", 0, end));
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    if (head.status < 200) {
      // 100 Continue and other interim answers: the real one follows.
      this.headSize = 0;
      return rest.length > 0 ? this.readHead(rest) : true;
    }
    let framing: Framing;
    try {
      framing = framingOf(this.method, head);
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    const connection = String(head.headers.connection ?? "").toLowerCase();
    this.keepAlive =
      framing.kind !== "close" &&
      (head.http10 ? connection.includes("keep-alive") : !connection.includes("close"));
    this.framing = framing;
    this.phase = "body";
    this.complete = framing.kind === "length" && framing.remaining === 0;
    this.socket.setTimeout(this.options.bodyMs);
    const onHead = this.onHead as (head: Head) => void;
    this.onHead = undefined;
    this.failHead = undefined;
    onHead({ status: head.status, headers: head.headers });
    if (rest.length === 0) return true;
    if (this.complete) {
      this.fail(connectionError("ERR_UNEXPECTED_DATA", "bytes after the response"));
      return false;
    }
    return this.readBody(rest);
  }

  /** Cuts the body's bytes out of a read; pauses while the consumer holds any of them. */
  private readBody(bytes: Buffer): boolean {
    try {
      this.frame(bytes);
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    if (this.pieces.length === 0) {
      if (this.complete && this.waiter) {
        const waiter = this.waiter;
        this.waiter = undefined;
        this.finish();
        waiter.resolve(undefined);
        return false;
      }
      return !this.complete;
    }
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter.resolve(this.pieces.shift());
    this.paused = true;
    // No timeout while the consumer holds the bytes: its pace is not the server's.
    this.socket.setTimeout(0);
    return false;
  }

  private frame(bytes: Buffer): void {
    const f = this.framing;
    if (f.kind === "close") {
      this.pieces.push(bytes);
      return;
    }
    if (f.kind === "length") {
      if (bytes.length > f.remaining)
        throw connectionError("ERR_UNEXPECTED_DATA", "more bytes than Content-Length");
      f.remaining -= bytes.length;
      this.complete = f.remaining === 0;
      this.pieces.push(bytes);
      return;
    }
    let at = 0;
    while (at < bytes.length) {
      if (this.complete) throw connectionError("ERR_UNEXPECTED_DATA", "bytes after the chunked body");
      if (f.state === "data") {
        const n = Math.min(f.left, bytes.length - at);
        this.pieces.push(bytes.subarray(at, at + n));
        at += n;
        f.left -= n;
        if (f.left === 0) f.state = "data-end";
        continue;
      }
      // A line: a chunk size, the CRLF after a chunk's data, or a trailer.
      const nl = bytes.indexOf(10, at);
      const upto = nl < 0 ? bytes.length : nl;
      f.line += bytes.toString("latin1", at, upto);
      if (f.line.length > MAX_CHUNK_LINE) throw connectionError("ERR_CHUNKED", "chunk line too long");
      at = upto;
      if (nl < 0) break;
      at++;
      const line = f.line.endsWith("\r") ? f.line.slice(0, -1) : f.line;
      f.line = "";
      if (f.state === "data-end") {
        if (line !== "") throw connectionError("ERR_CHUNKED", "chunk data longer than its size");
        f.state = "size";
      } else if (f.state === "size") {
        const size = /^([0-9a-fA-F]{1,12})(?:;.*)?$/.exec(line.trim());
        if (!size)
          throw connectionError("ERR_CHUNKED", `not a chunk size: ${JSON.stringify(line.slice(0, 40))}`);
        f.left = Number.parseInt(size[1] as string, 16);
        f.state = f.left === 0 ? "trailer" : "data";
      } else if (line === "") {
        this.complete = true; // the empty line after the trailers
      }
    }
  }

  /** The next body chunk (valid until the following call), or undefined at its end. */
  next(): Promise<Uint8Array | undefined> {
    const piece = this.pieces.shift();
    if (piece) return Promise.resolve(piece);
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

  /** The server closed its side: the end of a read-to-close body, else a failure. */
  private ended(): void {
    if (this.phase === "body" && this.framing.kind === "close" && !this.complete) {
      this.complete = true;
      if (this.waiter && this.pieces.length === 0) {
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter.resolve(undefined);
      }
    }
    this.fail(connectionError("ECONNRESET", "connection closed by the server"));
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
    if (this.complete && this.pieces.length === 0) this.finish();
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
    if (waiter) {
      if (this.complete) waiter.resolve(undefined);
      else waiter.reject(err);
    }
    this.release(this, false);
  }
}

/** How a response's body is delimited (RFC 9112 §6.3). */
function framingOf(method: string, head: Head): Framing {
  if (method === "HEAD" || head.status === 204 || head.status === 304)
    return { kind: "length", remaining: 0 };
  const te = head.headers["transfer-encoding"];
  if (te !== undefined) {
    const codings = String(te)
      .toLowerCase()
      .split(",")
      .map((s) => s.trim());
    if (codings.at(-1) !== "chunked") return { kind: "close" };
    if (codings.length > 1) {
      throw connectionError("ERR_TRANSFER_ENCODING", `unsupported Transfer-Encoding ${JSON.stringify(te)}`);
    }
    return { kind: "chunked", state: "size", line: "", left: 0 };
  }
  const length = head.headers["content-length"];
  if (length === undefined) return { kind: "close" };
  const values = (Array.isArray(length) ? length : [length])
    .flatMap((v) => v.split(","))
    .map((v) => v.trim());
  if (!values.every((v) => /^\d+$/.test(v) && v === values[0])) {
    throw connectionError("ERR_CONTENT_LENGTH", `bad Content-Length ${JSON.stringify(length)}`);
  }
  return { kind: "length", remaining: Number(values[0]) };
}

/** Parses a status line and header lines (no continuation lines: obsolete and refused). */
export function parseHead(text: string): Head & { http10: boolean } {
  const lines = text.split("\r\n");
  const status = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!status) {
    throw connectionError(
      "ERR_BAD_STATUS_LINE",
      `not an HTTP/1.1 status line: ${JSON.stringify(lines[0]?.slice(0, 80))}`,
    );
  }
  const headers: Record<string, string | string[]> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0 || /\s/.test(line.slice(0, colon))) {
      throw connectionError("ERR_BAD_HEADER", `not a header line: ${JSON.stringify(line.slice(0, 80))}`);
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers[name];
    headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return { status: Number(status[2]), headers, http10: status[1] === "0" };
}

/** Keep-alive connections per origin, at most `connections` busy at once. */
export class Http1Pool {
  private readonly idle = new Map<string, Http1Connection[]>();
  private readonly busy = new Map<string, number>();
  private readonly queue = new Map<string, (() => void)[]>();
  private closed = false;

  constructor(private readonly options: Http1Options) {}

  /**
   * Sends `method url` (http: only). Throws connection errors with Node-style codes
   * (ECONNRESET, ETIMEDOUT, …), and whatever a streamed body throws.
   */
  async request(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body?: Http1Body,
  ): Promise<Http1Response> {
    if (url.protocol !== "http:") throw new Error(`this client speaks http: only, not ${url.protocol}`);
    const origin = url.host;
    await this.acquire(origin);
    let released = false;
    const done = () => {
      if (released) return;
      released = true;
      this.releaseSlot(origin);
    };
    const target = `${url.pathname}${url.search}`;
    // The length is the body's own (added by the connection), never a caller's.
    const sent: Record<string, string> = { host: url.host };
    for (const [name, value] of Object.entries(headers))
      if (name.toLowerCase() !== "content-length") sent[name] = value;
    // As undici does: a method that carries a body says so even when it is empty.
    if (body === undefined && (method === "POST" || method === "PUT" || method === "PATCH")) body = "";
    const resendable = body === undefined || typeof body === "string" || body instanceof Uint8Array;
    try {
      for (;;) {
        const conn = this.take(url);
        let head: Head;
        try {
          head = await conn.request(method, target, sent, body);
        } catch (err) {
          // A kept-alive connection the server had closed: once more on a new one. Not
          // with a streamed body, which is read once (the upload code resumes it).
          if (conn.reused && resendable) continue;
          throw err;
        }
        return {
          statusCode: head.status,
          borrowed: true,
          headers: head.headers,
          body: borrowedBody(conn, done),
        };
      }
    } catch (err) {
      done();
      throw err;
    }
  }

  private take(url: URL): Http1Connection {
    const list = this.idle.get(url.host);
    for (let conn = list?.pop(); conn; conn = list?.pop()) if (conn.usable) return conn;
    return new Http1Connection(
      url.hostname.replace(/^\[|\]$/g, ""),
      Number(url.port || 80),
      this.options,
      (c, keep) => this.returned(url.host, c, keep),
    );
  }

  private returned(origin: string, conn: Http1Connection, keep: boolean): void {
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

function borrowedBody(conn: Http1Connection, release: () => void): ResponseBody {
  let destroyed = false;
  let iterating = false;
  const end = () => {
    if (destroyed) return;
    destroyed = true;
    release();
  };
  const body: ResponseBody = {
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
      if (iterating) throw new Error("a response body is read once");
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
