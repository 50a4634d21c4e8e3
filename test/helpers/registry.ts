/**
 * A real docker-registry (distribution 2.8) for tests, on 127.0.0.1 with a private
 * storage directory:
 *
 *   const reg = await startRegistry();                       // plain http
 *   const reg = await startRegistry({ htpasswd: { alice: "pw" } });
 *   const reg = await startRegistry({ token: tokenServer });  // bearer challenges
 *   const proxy = await startRegistry({ proxyOf: reg.url });  // pull-through cache
 *   const secure = await startRegistry({ tls: true });        // https, self-signed
 *   reg.host            // "127.0.0.1:PORT", as in an image reference
 *   reg.url             // "http://127.0.0.1:PORT"
 *   reg.accessLog()     // parsed access log lines so far: count requests, 206 bytes
 *   await reg.kill();   // SIGKILL: connections drop mid-body, as when the network dies
 *   await reg.restart() // same port, same storage
 *   await reg.stop();   // kill and remove the storage
 *
 * Always `stop()` in a `finally`/`after`; the temp directory goes with it.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { selfSignedCertificate } from "./certs.js";

const run = promisify(execFile);

export interface TokenAuthConfig {
  realm: string;
  service: string;
  issuer: string;
  /** PEM file holding the certificate whose key signs the tokens. */
  rootCertBundle: string;
}

export interface RegistryOptions {
  /** Basic auth with these users (bcrypt htpasswd generated for the test). */
  htpasswd?: Record<string, string>;
  /** Bearer token auth against a token server (see token-server.ts). */
  token?: TokenAuthConfig;
  /** Run as a pull-through cache of this registry URL. */
  proxyOf?: string;
  /** Listen on this port instead of a free one. */
  port?: number;
  /** Serve https with a self-signed certificate for 127.0.0.1 (made with openssl). */
  tls?: boolean;
}

/** One line of the registry's access log (combined log format). */
export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
  bytes: number;
  line: string;
}

export interface TestRegistry {
  host: string;
  url: string;
  port: number;
  dir: string;
  accessLog(): Promise<AccessLogEntry[]>;
  /** The registry's own log (stderr: app messages, errors). */
  appLog(): Promise<string>;
  /** Kills the process (SIGKILL: connections drop mid-body, as when the network dies); storage stays. */
  kill(): Promise<void>;
  /** Starts it again on the same port and storage (killing it first if it runs). */
  restart(): Promise<void>;
  /** Kills it and removes its storage: call in `finally`/`after`. */
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Bytes the registry sent, and in how many GETs, for blobs (or one blob) since access-log line `from`. */
export async function blobBytesSince(
  reg: TestRegistry,
  from: number,
  digest?: string,
): Promise<{ bytes: number; requests: number }> {
  const gets = (await reg.accessLog())
    .slice(from)
    .filter(
      (e) =>
        e.method === "GET" && (digest ? e.path.endsWith(`/blobs/${digest}`) : e.path.includes("/blobs/")),
    );
  return { bytes: gets.reduce((n, e) => n + e.bytes, 0), requests: gets.length };
}

/** A bcrypt htpasswd line per user (docker-registry accepts bcrypt only); cost 4 keeps tests fast. */
async function htpasswdFile(users: Record<string, string>): Promise<string> {
  const script =
    "import crypt, json, sys, warnings\n" +
    "warnings.simplefilter('ignore')\n" +
    "users = json.load(sys.stdin)\n" +
    "for u, p in users.items(): print(u + ':' + crypt.crypt(p, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))\n";
  // Debian's python3 (crypt backed by libxcrypt); a pyenv python may lack bcrypt.
  const child = execFile("/usr/bin/python3", ["-c", script]);
  child.stdin?.end(JSON.stringify(users));
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  const [code] = await once(child, "close");
  if (code !== 0 || !out.includes("$2b$"))
    throw new Error("could not make a bcrypt htpasswd with /usr/bin/python3");
  return out;
}

function configYaml(dir: string, port: number, opts: RegistryOptions): string {
  const lines = [
    "version: 0.1",
    "log: {level: info, formatter: text, accesslog: {disabled: false}}",
    "storage:",
    `  filesystem: {rootdirectory: ${join(dir, "data")}}`,
    "  delete: {enabled: true}",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "  secret: rootstock-test-secret",
  ];
  if (opts.htpasswd) {
    lines.push("auth:", `  htpasswd: {realm: rootstock-test, path: ${join(dir, "htpasswd")}}`);
  }
  if (opts.token) {
    const t = opts.token;
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${JSON.stringify(t.realm)}`,
      `    service: ${JSON.stringify(t.service)}`,
      `    issuer: ${JSON.stringify(t.issuer)}`,
      `    rootcertbundle: ${JSON.stringify(t.rootCertBundle)}`,
    );
  }
  if (opts.tls) lines.push(`  tls: {certificate: ${join(dir, "cert.pem")}, key: ${join(dir, "key.pem")}}`);
  if (opts.proxyOf) lines.push("proxy:", `  remoteurl: ${JSON.stringify(opts.proxyOf)}`);
  return `${lines.join("\n")}\n`;
}

const ACCESS_RE = /^\S+ \S+ \S+ \[[^\]]+\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)/;

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), "rootstock-registry-"));
  const port = opts.port ?? (await freePort());
  if (opts.htpasswd) await writeFile(join(dir, "htpasswd"), await htpasswdFile(opts.htpasswd));
  if (opts.tls) await selfSignedCertificate(dir, "127.0.0.1", "IP:127.0.0.1");
  const configPath = join(dir, "config.yml");
  await writeFile(configPath, configYaml(dir, port, opts));
  const accessPath = join(dir, "access.log");
  const appPath = join(dir, "registry.log");
  let child: ChildProcess | undefined;
  const url = `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`;

  const launch = async () => {
    // Append, so the log spans restarts.
    const out = await open(accessPath, "a");
    const err = await open(appPath, "a");
    child = spawn("docker-registry", ["serve", configPath], { stdio: ["ignore", out.fd, err.fd] });
    await out.close();
    await err.close();
    const started = child;
    const exited = once(started, "exit");
    for (let waited = 0; ; waited += 50) {
      if (started.exitCode !== null) {
        throw new Error(
          `docker-registry exited ${started.exitCode}: ${(await readFile(appPath, "utf8")).slice(-2000)}`,
        );
      }
      const ready = await new Promise<boolean>((resolve) => {
        const get = opts.tls ? httpsGet : httpGet;
        const req = get(`${url}/v2/`, { rejectUnauthorized: false }, (res) => {
          res.resume();
          resolve(true);
        });
        req.on("error", () => resolve(false));
        req.setTimeout(1000, () => req.destroy());
      });
      if (ready) break;
      if (waited > 15_000) {
        started.kill("SIGKILL");
        await exited;
        throw new Error(`docker-registry did not answer on ${url}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const kill = async () => {
    const c = child;
    child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = once(c, "exit");
      c.kill("SIGKILL");
      await exited;
    }
  };

  try {
    await launch();
  } catch (err) {
    await kill();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    host: `127.0.0.1:${port}`,
    url,
    port,
    dir,
    async accessLog() {
      const text = await readFile(accessPath, "utf8").catch(() => "");
      const entries: AccessLogEntry[] = [];
      for (const line of text.split("\n")) {
        const m = ACCESS_RE.exec(line);
        if (m) {
          entries.push({
            method: m[1]!,
            path: m[2]!,
            status: Number(m[3]),
            bytes: m[4] === "-" ? 0 : Number(m[4]),
            line,
          });
        }
      }
      return entries;
    },
    appLog: () => readFile(appPath, "utf8").catch(() => ""),
    kill,
    async stop() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await launch();
    },
  };
}

/** Whether docker-registry is installed (tests skip with a reason otherwise). */
export async function hasDockerRegistry(): Promise<boolean> {
  try {
    await run("docker-registry", ["--version"]);
    return true;
  } catch {
    return false;
  }
}
