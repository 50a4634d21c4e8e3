/**
 * A bearer token server for docker-registry's `auth: token` mode, written for the
 * tests (node:http on 127.0.0.1). It checks Basic credentials, grants the scopes
 * asked for (pull only for anonymous callers when `anonymousPull`), and returns an
 * RS256 JWT whose `x5c` header carries a self-signed certificate (made with
 * openssl) that the registry trusts through `rootcertbundle`.
 *
 *   const tokens = await startTokenServer({ users: { alice: "pw" } });
 *   const reg = await startRegistry({ token: tokens });
 *   tokens.issued   // one entry per token handed out: account and scopes
 */
import { createPrivateKey, randomUUID, sign, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selfSignedCertificate } from "./certs.js";
import type { TokenAuthConfig } from "./registry.js";

export interface TokenServerOptions {
  users: Record<string, string>;
  /** Anonymous callers may pull (not push). Default false: they get 401. */
  anonymousPull?: boolean;
  /** Token lifetime in seconds (expires_in). Default 300. */
  lifetime?: number;
}

export interface IssuedToken {
  account: string | undefined;
  scopes: string[];
}

export interface TokenServer extends TokenAuthConfig {
  url: string;
  issued: IssuedToken[];
  /** Requests refused (bad credentials, anonymous push). */
  refused: number;
  stop(): Promise<void>;
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString("base64url");

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const dir = await mkdtemp(join(tmpdir(), "rootstock-token-"));
  const { keyPath, certPath } = await selfSignedCertificate(dir, "rootstock-test-token-issuer");
  const key = createPrivateKey(await readFile(keyPath));
  const certDer = new X509Certificate(await readFile(certPath)).raw;
  const issuer = "rootstock-test-issuer";
  const service = "rootstock-test-registry";
  const issued: IssuedToken[] = [];
  const state = { refused: 0 };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname !== "/token") {
      res.writeHead(404).end();
      return;
    }
    let account: string | undefined;
    const header = req.headers.authorization;
    if (header?.startsWith("Basic ")) {
      const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      const user = decoded.slice(0, colon);
      if (colon < 0 || opts.users[user] === undefined || opts.users[user] !== decoded.slice(colon + 1)) {
        state.refused++;
        res.writeHead(401, { "content-type": "application/json" }).end('{"details":"bad credentials"}');
        return;
      }
      account = user;
    }
    const scopes = url.searchParams.getAll("scope");
    const access = scopes.flatMap((scope) => {
      const m = /^repository:([^:]+):(.+)$/.exec(scope);
      if (!m) return [];
      const actions = m[2]!
        .split(",")
        .filter((a) => account !== undefined || (opts.anonymousPull && a === "pull"));
      return actions.length ? [{ type: "repository", name: m[1]!, actions }] : [];
    });
    if (account === undefined && !opts.anonymousPull) {
      state.refused++;
      res.writeHead(401, { "content-type": "application/json" }).end('{"details":"credentials required"}');
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    const lifetime = opts.lifetime ?? 300;
    const jwtHeader = { typ: "JWT", alg: "RS256", x5c: [certDer.toString("base64")] };
    const claims = {
      iss: issuer,
      sub: account ?? "",
      aud: url.searchParams.get("service") ?? service,
      exp: now + lifetime,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(jwtHeader))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign("sha256", Buffer.from(signingInput), key);
    const token = `${signingInput}.${b64url(signature)}`;
    issued.push({ account, scopes });
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: lifetime,
        issued_at: new Date().toISOString(),
      }),
    );
  };

  const server = createServer(handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("token server has no port");
  const url = `http://127.0.0.1:${address.port}`;
  return {
    url,
    realm: `${url}/token`,
    service,
    issuer,
    rootCertBundle: certPath,
    issued,
    get refused() {
      return state.refused;
    },
    async stop() {
      server.closeAllConnections();
      server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
