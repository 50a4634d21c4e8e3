import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { afterEach, describe, it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { Digester, sha256 } from "../../src/oci/digest.js";
import { MediaType } from "../../src/oci/mediatypes.js";
import { RegistryClient, RegistryError, staticAuth } from "../../src/remote/index.js";
import { readAll, readAllBorrowed } from "./image.js";
import { type MisbehavingServer, serveBlob, startMisbehavingServer } from "./misbehaving-server.js";

const blob = randomBytes(256 * 1024);
const digest = sha256(blob);
const blobPath = `/v2/lies/blobs/${digest}`;

describe("a registry that lies is caught", () => {
  const servers: MisbehavingServer[] = [];
  const clients: RegistryClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    for (const s of servers.splice(0)) await s.stop();
  });
  const start = async (...args: Parameters<typeof startMisbehavingServer>) => {
    const server = await startMisbehavingServer(...args);
    servers.push(server);
    const client = new RegistryClient(server.host, {
      insecure: true,
      env: {},
      retries: 2,
      retryBaseDelayMs: 10,
    });
    clients.push(client);
    return { server, repo: client.repository("lies") };
  };
  const drain = async (source: AsyncIterable<unknown>) => {
    for await (const _ of source) {
      // consume
    }
  };

  it("wrong bytes for a digest: DIGEST_MISMATCH at the end of the stream", async () => {
    // Both ways of reading a body: owned chunks (undici), borrowed ones (bulk.ts).
    for (const read of [readAll, readAllBorrowed]) {
      const { repo } = await start((req, res) => serveBlob(req, res, randomBytes(blob.length)));
      await assert.rejects(read(repo.openBlob(digest, { size: blob.length })), (err) => {
        assert.ok(isRootstockError(err, "DIGEST_MISMATCH"));
        assert.match(err.message, new RegExp(`lies@${digest}: content hashes to sha256:`));
        return true;
      });
    }
  });

  it("a body cut short once is resumed with Range from where it stopped", async () => {
    // Both ways of reading a body: owned chunks (undici), borrowed ones (bulk.ts).
    for (const read of [readAll, readAllBorrowed]) {
      let cut = false;
      const { server, repo } = await start((req, res) => {
        if (!cut) {
          cut = true;
          res.writeHead(200, { "content-length": blob.length });
          res.write(blob.subarray(0, 100_000), () => res.destroy());
          return;
        }
        serveBlob(req, res, blob);
      });
      assert.deepEqual(await read(repo.openBlob(digest, { size: blob.length })), blob);
      const gets = server.seen.filter((s) => s.url === blobPath);
      assert.equal(gets.length, 2);
      assert.equal(gets[0]!.range, undefined);
      assert.match(gets[1]!.range ?? "", /^bytes=\d+-$/);
      assert.ok(Number(/\d+/.exec(gets[1]!.range!)![0]) >= 65536, "resumed past the start");
    }
  });

  it("a body always cut short: NETWORK after the retries, or SIZE_MISMATCH when it ends cleanly", async () => {
    // Both ways of reading a body: owned chunks (undici), borrowed ones (bulk.ts).
    for (const read of [readAll, readAllBorrowed]) {
      const { repo } = await start((_req, res) => {
        res.writeHead(200, { "content-length": blob.length });
        res.write(blob.subarray(0, 1000), () => res.destroy());
      });
      await assert.rejects(read(repo.openBlob(digest, { size: blob.length })), (err) =>
        isRootstockError(err, "NETWORK"),
      );
      const short = await start((_req, res) => {
        // No Content-Length: a chunked body that ends early, cleanly.
        res.writeHead(200, { "transfer-encoding": "chunked" });
        res.end(blob.subarray(0, 1000));
      });
      await assert.rejects(read(short.repo.openBlob(digest, { size: blob.length })), (err) => {
        assert.ok(isRootstockError(err, "SIZE_MISMATCH"));
        assert.match(err.message, new RegExp(`expected ${blob.length} bytes, got 1000`));
        return true;
      });
    }
  });

  it("a 206 for the wrong range", async () => {
    const { repo } = await start((_req, res) => {
      res.writeHead(206, { "content-range": `bytes 100-199/${blob.length}`, "content-length": 100 });
      res.end(blob.subarray(100, 200));
    });
    await assert.rejects(drain(repo.getBlobRanges(digest, [{ offset: 0, length: 100 }])), (err) => {
      assert.ok(err instanceof RegistryError);
      assert.match(err.message, /asked for bytes=0-99, got Content-Range "bytes 100-199\//);
      return true;
    });
    // And when resuming a stream.
    const digester = new Digester();
    digester.update(blob.subarray(0, 50));
    await assert.rejects(readAll(repo.openBlob(digest, { offset: 50, digester })), (err) => {
      assert.ok(err instanceof RegistryError);
      assert.match(err.message, /asked for bytes from 50, got Content-Range "bytes 100-199/);
      return true;
    });
  });

  it("a multipart body with a bad boundary, or parts not asked for", async () => {
    const multipart = (boundaryInHeader: string, boundaryInBody: string, ranges: [number, number][]) =>
      start((_req, res) => {
        let body = "";
        const parts: Buffer[] = [];
        for (const [a, b] of ranges) {
          body = `--${boundaryInBody}\r\nContent-Range: bytes ${a}-${b}/${blob.length}\r\n\r\n`;
          parts.push(Buffer.from(body), blob.subarray(a, b + 1), Buffer.from("\r\n"));
        }
        parts.push(Buffer.from(`--${boundaryInBody}--\r\n`));
        res.writeHead(206, { "content-type": `multipart/byteranges; boundary=${boundaryInHeader}` });
        res.end(Buffer.concat(parts));
      });
    const ranges = [
      { offset: 0, length: 10 },
      { offset: 100_000, length: 10 },
    ];
    const bad = await multipart("GOOD", "EVIL", [
      [0, 9],
      [100_000, 100_009],
    ]);
    await assert.rejects(drain(bad.repo.getBlobRanges(digest, ranges, { mergeGap: 0 })), (err) => {
      assert.ok(isRootstockError(err, "REGISTRY"));
      assert.match(
        err.message,
        /malformed multipart\/byteranges body: body does not start with the boundary "GOOD"/,
      );
      return true;
    });
    const wrong = await multipart("B", "B", [
      [0, 9],
      [100_001, 100_010],
    ]);
    await assert.rejects(drain(wrong.repo.getBlobRanges(digest, ranges, { mergeGap: 0 })), (err) => {
      assert.ok(err instanceof RegistryError);
      assert.match(
        err.message,
        /multipart answer has bytes 100001-100010, not one of the asked bytes=0-9,100000-100009/,
      );
      return true;
    });
    const missing = await multipart("B", "B", [[0, 9]]);
    await assert.rejects(drain(missing.repo.getBlobRanges(digest, ranges, { mergeGap: 0 })), (err) => {
      assert.ok(err instanceof RegistryError);
      assert.match(err.message, /response lacks bytes 100000-100009/);
      return true;
    });
  });

  it("a 200 with the whole blob answers ranges (S3-like); a 416 to several ranges falls back to one at a time (zot)", async () => {
    const ranges = [
      { offset: 5, length: 10 },
      { offset: 200_000, length: 5000 },
    ];
    const whole = await start((req, res) => serveBlob({ ...req, headers: {} } as typeof req, res, blob));
    const got = [];
    for await (const r of whole.repo.getBlobRanges(digest, ranges, { mergeGap: 0 })) got.push(r);
    assert.equal(got.length, 2);
    for (const { range, bytes } of got) {
      assert.deepEqual(Buffer.from(bytes), blob.subarray(range.offset, range.offset + range.length));
    }
    const zot = await start((req, res) => {
      if ((req.headers.range ?? "").includes(",")) res.writeHead(416).end();
      else serveBlob(req, res, blob);
    });
    const got2 = [];
    for await (const r of zot.repo.getBlobRanges(digest, ranges, { mergeGap: 0 })) got2.push(r);
    assert.equal(got2.length, 2);
    assert.deepEqual(
      zot.server.seen.filter((s) => s.url === blobPath).map((s) => s.range),
      ["bytes=5-14,200000-204999", "bytes=5-14", "bytes=200000-204999"],
    );
  });

  it("accepts honest variations: parts out of order, several ranges coalesced into one 206", async () => {
    const ranges = [
      { offset: 5, length: 10 },
      { offset: 1000, length: 20 },
      { offset: 200_000, length: 5000 },
    ];
    const reversed = await start((req, res) => {
      const spans = (req.headers.range ?? "")
        .slice(6)
        .split(",")
        .map((r) => r.split("-").map(Number) as [number, number])
        .reverse();
      const parts: Buffer[] = [];
      for (const [a, b] of spans) {
        parts.push(Buffer.from(`\r\n--SEP\r\nContent-Range: bytes ${a}-${b}/${blob.length}\r\n\r\n`));
        parts.push(blob.subarray(a, b + 1));
      }
      parts.push(Buffer.from("\r\n--SEP--\r\n"));
      res.writeHead(206, { "content-type": "multipart/byteranges; boundary=SEP" }).end(Buffer.concat(parts));
    });
    const coalesced = await start((req, res) => {
      // One range from the first start to the last end, as RFC 9110 allows.
      const bounds = (req.headers.range ?? "").slice(6).split(/[-,]/).map(Number);
      const a = bounds[0]!;
      const b = bounds[bounds.length - 1]!;
      res.writeHead(206, { "content-range": `bytes ${a}-${b}/${blob.length}`, "content-length": b - a + 1 });
      res.end(blob.subarray(a, b + 1));
    });
    for (const { repo } of [reversed, coalesced]) {
      const got = [];
      for await (const r of repo.getBlobRanges(digest, ranges, { mergeGap: 0 })) got.push(r);
      assert.equal(got.length, 3);
      for (const { range, bytes } of got) {
        assert.deepEqual(Buffer.from(bytes), blob.subarray(range.offset, range.offset + range.length));
      }
    }
  });

  it("a stalled body or missing headers time out, and the transfer resumes", async () => {
    // Both ways of reading a body: owned chunks (undici), borrowed ones (bulk.ts).
    for (const read of [readAll, readAllBorrowed]) {
      let calls = 0;
      const stalled: import("node:http").ServerResponse[] = [];
      const server = await startMisbehavingServer((req, res) => {
        calls++;
        if (calls === 1) {
          res.writeHead(200, { "content-length": blob.length });
          res.write(blob.subarray(0, 70_000)); // then nothing: the body stalls
          stalled.push(res);
        } else if (calls === 2) {
          stalled.push(res); // no headers at all
        } else serveBlob(req, res, blob);
      });
      servers.push(server);
      const client = new RegistryClient(server.host, {
        insecure: true,
        env: {},
        retries: 3,
        retryBaseDelayMs: 10,
        timeouts: { bodyMs: 300, headersMs: 300 },
      });
      clients.push(client);
      assert.deepEqual(await read(client.repository("lies").openBlob(digest, { size: blob.length })), blob);
      const gets = server.seen.filter((s) => s.url === blobPath);
      assert.equal(gets.length, 3);
      assert.match(gets[2]!.range ?? "", /^bytes=[1-9]\d*-$/);
      for (const res of stalled) res.destroy();
    }
  });

  it("runs parallel transfers, at most `concurrency` at once per registry", async () => {
    // Both ways of reading a body: owned chunks (undici), borrowed ones (bulk.ts).
    for (const read of [readAll, readAllBorrowed]) {
      let active = 0;
      let peak = 0;
      const server = await startMisbehavingServer((req, res) => {
        active++;
        peak = Math.max(peak, active);
        setTimeout(() => {
          res.on("finish", () => active--);
          serveBlob(req, res, blob);
        }, 100);
      });
      servers.push(server);
      const client = new RegistryClient(server.host, { insecure: true, env: {}, concurrency: 2 });
      clients.push(client);
      const repo = client.repository("lies");
      const results = await Promise.all(Array.from({ length: 6 }, () => read(repo.openBlob(digest))));
      assert.ok(results.every((r) => r.equals(blob)));
      assert.equal(peak, 2);
    }
  });

  it("a push cut mid-PATCH is resumed from the offset the session reports, or refused for a one-shot stream", async () => {
    const big = randomBytes(20 * 1024 * 1024);
    const bigDigest = sha256(big);
    let received = 0;
    let patches = 0;
    const { server, repo } = await start((req, res) => {
      const url = req.url ?? "";
      if (req.method === "POST") {
        res.writeHead(202, { location: "/v2/lies/blobs/uploads/s1" }).end();
      } else if (req.method === "PATCH") {
        patches++;
        const first = patches === 1;
        const start = Number(/^(\d+)-/.exec(req.headers["content-range"] ?? "")?.[1]);
        assert.equal(start, received, "a PATCH starts where the session is");
        req.on("data", (d: Buffer) => {
          received += d.length;
          if (first && received >= 5 * 1024 * 1024) req.socket.destroy();
        });
        req.on("end", () => res.writeHead(202, { location: url, range: `0-${received - 1}` }).end());
      } else if (req.method === "GET" && url.includes("/uploads/")) {
        res.writeHead(204, { location: url, range: `0-${received - 1}` }).end();
      } else if (req.method === "PUT") {
        res.writeHead(201, { "docker-content-digest": bigDigest }).end();
      } else if (req.method === "HEAD") res.writeHead(404).end();
      else res.writeHead(500).end();
    });
    const result = await repo.pushBlob(
      async function* () {
        for (let i = 0; i < big.length; i += 1 << 20) yield big.subarray(i, i + (1 << 20));
      },
      { digest: bigDigest, size: big.length },
    );
    assert.equal(result, "uploaded");
    assert.equal(received, big.length, "every byte arrived once");
    const resumedPatch = server.seen.filter((s) => s.method === "PATCH");
    assert.equal(resumedPatch.length, 2);

    // The same stream handed back twice cannot be resumed: a clear error, not a short upload.
    received = 0;
    patches = 0;
    let offered = 0;
    const once = (async function* () {
      for (let i = 0; i < big.length; i += 1 << 20) {
        offered++;
        yield big.subarray(i, i + (1 << 20));
      }
    })();
    await assert.rejects(
      repo.pushBlob(() => once, { digest: bigDigest, size: big.length }),
      (err) => isRootstockError(err, "NETWORK") && /cannot be read again/.test(err.message),
    );
    assert.ok(offered < 20);
  });

  it("retries 429 and 503 with backoff, honouring Retry-After", async () => {
    // Both ways of reading a body: owned chunks (undici), borrowed ones (bulk.ts).
    for (const read of [readAll, readAllBorrowed]) {
      let calls = 0;
      const { repo } = await start((req, res) => {
        calls++;
        if (calls === 1) res.writeHead(429, { "retry-after": "0" }).end();
        else if (calls === 2) res.writeHead(503).end();
        else serveBlob(req, res, blob);
      });
      assert.deepEqual(await read(repo.openBlob(digest)), blob);
      assert.equal(calls, 3);
    }
  });

  it("keeps the registry's error code and status: DENIED (403)", async () => {
    const { repo } = await start((_req, res) => {
      res.writeHead(403, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          errors: [{ code: "DENIED", message: "requested access to the resource is denied" }],
        }),
      );
    });
    await assert.rejects(repo.getManifest("latest"), (err) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(
        err.message,
        `${servers[0]!.host}/lies:latest: DENIED (403): requested access to the resource is denied`,
      );
      return true;
    });
  });

  it("a manifest whose bytes do not match the digest asked for, or the digest claimed", async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest }));
    const { repo } = await start((_req, res) => {
      res.writeHead(200, { "content-type": MediaType.OciManifest, "docker-content-digest": sha256("other") });
      res.end(manifest);
    });
    await assert.rejects(repo.getManifest(sha256("other")), (err) =>
      isRootstockError(err, "DIGEST_MISMATCH"),
    );
    await assert.rejects(
      repo.getManifest("latest"),
      (err) => isRootstockError(err, "DIGEST_MISMATCH") && /registry says/.test(err.message),
    );
  });

  it("a redirect to another host (as to S3) drops the Authorization header", async () => {
    // Both ways of reading a body: owned chunks (undici), borrowed ones (bulk.ts).
    for (const read of [readAll, readAllBorrowed]) {
      const storage = await startMisbehavingServer((req, res) => serveBlob(req, res, blob));
      servers.push(storage);
      const reg = await startMisbehavingServer(
        (req, res) => {
          if (req.headers.authorization !== `Basic ${Buffer.from("u:p").toString("base64")}`) {
            res.writeHead(401, { "www-authenticate": 'Basic realm="x"' }).end();
            return;
          }
          res.writeHead(307, { location: `${storage.url}/bucket/blob?sig=abc` }).end();
        },
        {
          ping: (_req, res) => res.writeHead(401, { "www-authenticate": 'Basic realm="x"' }).end(),
        },
      );
      servers.push(reg);
      const client = new RegistryClient(reg.host, { insecure: true, auth: staticAuth("u", "p"), retries: 0 });
      clients.push(client);
      assert.deepEqual(await read(client.repository("lies").openBlob(digest)), blob);
      assert.ok(reg.seen.some((s) => s.url === blobPath && s.authorization?.startsWith("Basic ")));
      assert.equal(storage.seen.length, 1);
      assert.equal(storage.seen[0]!.url, "/bucket/blob?sig=abc");
      assert.equal(storage.seen[0]!.authorization, undefined);
    }
  });
});
