/**
 * A small registry that lies, for the tests (node:http on 127.0.0.1): each test
 * hands it a handler for the requests under /v2/<repo>/...; `/v2/` answers 200
 * (or the challenge the test wants). It records every request's method, URL,
 * Range and Authorization so tests can check what the client sent.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export interface SeenRequest {
  method: string;
  url: string;
  range: string | undefined;
  authorization: string | undefined;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest[]) => void;

export interface MisbehavingServer {
  host: string;
  url: string;
  seen: SeenRequest[];
  handler: Handler;
  stop(): Promise<void>;
}

export async function startMisbehavingServer(
  handler: Handler,
  opts: { ping?: (req: IncomingMessage, res: ServerResponse) => void } = {},
): Promise<MisbehavingServer> {
  const seen: SeenRequest[] = [];
  const state: MisbehavingServer = {
    host: "",
    url: "",
    seen,
    handler,
    stop: async () => {},
  };
  const server: Server = createServer((req, res) => {
    seen.push({
      method: req.method ?? "",
      url: req.url ?? "",
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
    if (req.url === "/v2/") {
      if (opts.ping) opts.ping(req, res);
      else res.writeHead(200, { "content-type": "application/json" }).end("{}");
      return;
    }
    state.handler(req, res, seen);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("no port");
  state.host = `127.0.0.1:${address.port}`;
  state.url = `http://${state.host}`;
  state.stop = async () => {
    server.closeAllConnections();
    server.close();
    await once(server, "close").catch(() => {});
  };
  return state;
}

/** Serves a blob honestly: 200, or 206 for `bytes=N-` / `bytes=a-b` single ranges. */
export function serveBlob(req: IncomingMessage, res: ServerResponse, blob: Uint8Array): void {
  const range = req.headers.range;
  const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : undefined;
  if (!m) {
    res.writeHead(200, { "content-length": blob.length, "content-type": "application/octet-stream" });
    res.end(blob);
    return;
  }
  const start = Number(m[1]);
  const end = m[2] ? Math.min(Number(m[2]), blob.length - 1) : blob.length - 1;
  res.writeHead(206, {
    "content-length": end - start + 1,
    "content-range": `bytes ${start}-${end}/${blob.length}`,
  });
  res.end(blob.subarray(start, end + 1));
}
