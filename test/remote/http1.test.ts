import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import { afterEach, describe, it } from "node:test";
import { Http1Pool, type Http1Response, parseHead } from "../../src/remote/http1.js";

const options = { connections: 6, connectMs: 2000, headersMs: 2000, bodyMs: 2000 };

describe("http1: response heads", () => {
  it("parses the status, lower-cases names and keeps repeated headers as arrays", () => {
    const head = parseHead(
      "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nWWW-Authenticate: Basic\r\nwww-authenticate: Bearer realm=x",
    );
    assert.equal(head.status, 206);
    assert.equal(head.http10, false);
    assert.equal(head.headers["content-length"], "10");
    assert.deepEqual(head.headers["www-authenticate"], ["Basic", "Bearer realm=x"]);
    assert.equal(parseHead("HTTP/1.0 200").http10, true);
  });

  it("refuses what is not HTTP/1.x", () => {
    assert.throws(() => parseHead("SSH-2.0-OpenSSH"), /not an HTTP\/1.1 status line/);
    assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nno colon here"), /not a header line/);
    assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nbad name: x"), /not a header line/);
  });
});

describe("http1 against a server", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const blob = randomBytes(3 * 1024 * 1024 + 17);

  async function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void) {
    const server: Server = createServer(handler);
    let connections = 0;
    server.on("connection", () => connections++);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanups.push(async () => {
      server.closeAllConnections();
      server.close();
    });
    const { port } = server.address() as { port: number };
    return {
      server,
      url: (path: string) => new URL(`http://127.0.0.1:${port}${path}`),
      connections: () => connections,
    };
  }

  /** A server that answers every request with `raw` bytes as they are. */
  async function rawServer(raw: Buffer) {
    const server: NetServer = createNetServer((socket) => {
      socket.once("data", () => socket.end(raw));
      socket.on("error", () => {});
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanups.push(() => {
      server.close();
    });
    return new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}/blob`);
  }

  function pool(opts = options): Http1Pool {
    const p = new Http1Pool(opts);
    cleanups.push(() => p.close());
    return p;
  }

  async function readBody(res: Http1Response): Promise<{ bytes: Buffer; buffers: Set<ArrayBufferLike> }> {
    const parts: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const chunk of res.body) {
      buffers.add(chunk.buffer);
      parts.push(Buffer.from(chunk));
    }
    return { bytes: Buffer.concat(parts), buffers };
  }

  it("lends every chunk from one buffer, and the bytes are the body's", async () => {
    const server = await httpServer((_req, res) =>
      res.writeHead(200, { "content-length": blob.length }).end(blob),
    );
    const res = await pool().request("GET", server.url("/blob"), {});
    assert.ok(res);
    assert.equal(res.statusCode, 200);
    const { bytes, buffers } = await readBody(res);
    assert.ok(bytes.equals(blob));
    assert.equal(buffers.size, 1, "one read buffer for the whole body");
  });

  it("keeps the connection alive between requests, and replaces one the server closed", async () => {
    const server = await httpServer((_req, res) =>
      res.writeHead(200, { "content-length": blob.length }).end(blob),
    );
    const p = pool();
    for (let i = 0; i < 3; i++)
      assert.ok((await readBody((await p.request("GET", server.url("/blob"), {}))!)).bytes.equals(blob));
    assert.equal(server.connections(), 1);
    // As a server's keep-alive timeout does, maybe while the next request is on its way.
    server.server.closeIdleConnections();
    assert.ok((await readBody((await p.request("GET", server.url("/blob"), {}))!)).bytes.equals(blob));
    assert.equal(server.connections(), 2);
  });

  it("a body left unread closes its connection; the next request gets a new one", async () => {
    const server = await httpServer((_req, res) =>
      res.writeHead(200, { "content-length": blob.length }).end(blob),
    );
    const p = pool();
    const first = await p.request("GET", server.url("/blob"), {});
    for await (const _ of first!.body) break;
    assert.ok((await readBody((await p.request("GET", server.url("/blob"), {}))!)).bytes.equals(blob));
    assert.equal(server.connections(), 2);
  });

  it("reads chunked bodies (chunks split anywhere across reads), bodies up to the close, and HEAD answers", async () => {
    const server = await httpServer((req, res) => {
      if (req.url === "/chunked") {
        res.writeHead(200, { "transfer-encoding": "chunked" });
        // Many small writes: chunk sizes, data and CRLFs land across TCP reads.
        for (let at = 0; at < blob.length; at += 100_003) res.write(blob.subarray(at, at + 100_003));
        res.end();
      } else if (req.url === "/close") {
        res.writeHead(200, { connection: "close" });
        res.end(blob);
      } else
        res.writeHead(200, { "content-length": blob.length }).end(req.method === "HEAD" ? undefined : blob);
    });
    const p = pool();
    assert.ok((await readBody((await p.request("GET", server.url("/chunked"), {}))!)).bytes.equals(blob));
    assert.ok((await readBody((await p.request("GET", server.url("/close"), {}))!)).bytes.equals(blob));
    const head = await p.request("HEAD", server.url("/blob"), {});
    assert.equal(head.headers["content-length"], String(blob.length));
    assert.equal((await readBody(head)).bytes.length, 0);
    // The connection kept after the chunked body and the HEAD serves the next request.
    assert.ok((await readBody((await p.request("GET", server.url("/blob"), {}))!)).bytes.equals(blob));
  });

  it("a malformed chunked body fails the read", async () => {
    const bad = await rawServer(
      Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    );
    await assert.rejects(
      async () => readBody(await pool().request("GET", bad, {})),
      (err) => (err as { code?: string }).code === "ERR_CHUNKED",
    );
    const long = await rawServer(
      Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"),
    );
    await assert.rejects(
      async () => readBody(await pool().request("GET", long, {})),
      (err) => (err as { code?: string }).code === "ERR_CHUNKED",
    );
  });

  it("more bytes than Content-Length, or a body cut short, fail the read", async () => {
    const long = await rawServer(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"));
    await assert.rejects(
      async () => readBody((await pool().request("GET", long, {}))!),
      (err) => (err as { code?: string }).code === "ERR_UNEXPECTED_DATA",
    );
    const short = await rawServer(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nabcdef"));
    await assert.rejects(
      async () => readBody((await pool().request("GET", short, {}))!),
      (err) => (err as { code?: string }).code === "ECONNRESET",
    );
  });

  it("a body followed by Connection: close is whole, and the next request connects again", async () => {
    const server = await httpServer((_req, res) =>
      res.writeHead(200, { "content-length": blob.length, connection: "close" }).end(blob),
    );
    const p = pool();
    for (let i = 0; i < 2; i++)
      assert.ok((await readBody((await p.request("GET", server.url("/blob"), {}))!)).bytes.equals(blob));
    assert.equal(server.connections(), 2);
  });

  it("holds at most `connections` exchanges per origin at once", async () => {
    let active = 0;
    let peak = 0;
    const server = await httpServer((_req, res) => {
      active++;
      peak = Math.max(peak, active);
      res.on("finish", () => active--);
      setTimeout(() => res.writeHead(200, { "content-length": blob.length }).end(blob), 50);
    });
    const p = pool({ ...options, connections: 2 });
    const bodies = await Promise.all(
      Array.from(
        { length: 5 },
        async () => (await readBody((await p.request("GET", server.url("/blob"), {}))!)).bytes,
      ),
    );
    assert.ok(bodies.every((b) => b.equals(blob)));
    assert.equal(peak, 2);
  });

  it("sends a body chunk by chunk, each written before the next is asked for", async () => {
    let received = Buffer.alloc(0);
    const server = await httpServer(async (req, res) => {
      const parts: Buffer[] = [];
      for await (const part of req) parts.push(part as Buffer);
      received = Buffer.concat(parts);
      res.writeHead(202, { location: "/next", "content-length": 0 }).end();
    });
    // One buffer refilled for every chunk: the body lends its chunks.
    const lent = Buffer.alloc(64 * 1024);
    let asked = 0;
    async function* chunks() {
      for (let at = 0; at < blob.length; at += lent.length) {
        asked++;
        const n = blob.copy(lent, 0, at, Math.min(blob.length, at + lent.length));
        yield lent.subarray(0, n);
      }
    }
    const res = await pool().request(
      "PATCH",
      server.url("/upload"),
      {},
      { chunks: chunks(), length: blob.length },
    );
    assert.equal(res?.statusCode, 202);
    assert.equal(res?.headers.location, "/next");
    await res?.body.dump();
    assert.ok(received.equals(blob), "the server got every byte, none overwritten");
    assert.equal(asked, Math.ceil(blob.length / lent.length));
  });

  it("a body shorter or longer than its length fails the request", async () => {
    const server = await httpServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(202, { "content-length": 0 }).end());
    });
    async function* bytes(n: number) {
      yield blob.subarray(0, n);
    }
    for (const n of [10, 1000]) {
      await assert.rejects(
        pool().request("PATCH", server.url("/upload"), {}, { chunks: bytes(n), length: 100 }),
        (err) => (err as { code?: string }).code === "ERR_BODY_LENGTH",
      );
    }
  });

  it("an answer before the body is sent stops the sending and stands", async () => {
    const server = await httpServer((_req, res) => {
      res.writeHead(413, { "content-type": "application/json", "content-length": 2 }).end("{}");
    });
    let asked = 0;
    async function* forever() {
      for (;;) {
        asked++;
        await new Promise((r) => setTimeout(r, 5));
        yield blob.subarray(0, 1024);
      }
    }
    const res = await pool().request(
      "PATCH",
      server.url("/upload"),
      {},
      { chunks: forever(), length: 1 << 30 },
    );
    assert.equal(res?.statusCode, 413);
    await res?.body.dump();
    const after = asked;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(asked, after, "nothing more is read from the body");
  });
});
