/**
 * Reading extended attributes without following symlinks. Node has no xattr API, so
 * one `getfattr` (Debian package `attr`) run, fed the scanned paths NUL-separated
 * through `xargs -0`, dumps every attribute of every path with llistxattr/lgetxattr
 * (`-h`), values in base64. See README.md for why this and not a native module.
 */
import { spawn } from "node:child_process";
import { RootstockError } from "../errors.js";
import type { Xattr } from "./tree.js";

/** Undoes getfattr's quoting of names: `\NNN` octal escapes (control bytes, "\", "=", space...). */
function unquote(text: string): Buffer {
  const raw = Buffer.from(text, "utf8");
  if (!raw.includes(0x5c)) return raw;
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i]!;
    if (byte === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString())) {
      out.push(Number.parseInt(raw.subarray(i + 1, i + 4).toString(), 8));
      i += 3;
    } else {
      out.push(byte);
    }
  }
  return Buffer.from(out);
}

function decodeValue(text: string, where: string): Uint8Array {
  if (text.startsWith("0s")) return Buffer.from(text.slice(2), "base64");
  if (text.startsWith("0x")) return Buffer.from(text.slice(2), "hex");
  if (text.startsWith('"') && text.endsWith('"')) return unquote(text.slice(1, -1));
  throw new RootstockError("TOOL_FAILED", `getfattr: unexpected value encoding for ${where}`);
}

/** Parses `getfattr --dump -e base64` output into absolute path → attributes (unsorted). */
export function parseGetfattrDump(dump: string): Map<string, Xattr[]> {
  const result = new Map<string, Xattr[]>();
  let current: Xattr[] | undefined;
  let currentPath = "";
  for (const line of dump.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# file: ")) {
      currentPath = unquote(line.slice(8)).toString("utf8");
      current = [];
      result.set(currentPath, current);
      continue;
    }
    if (!current)
      throw new RootstockError("TOOL_FAILED", `getfattr: unexpected line ${JSON.stringify(line)}`);
    const eq = line.indexOf("=");
    const name = unquote(eq < 0 ? line : line.slice(0, eq)).toString("utf8");
    const value = eq < 0 ? new Uint8Array() : decodeValue(line.slice(eq + 1), `${currentPath}: ${name}`);
    current.push([name, value]);
  }
  return result;
}

/** Reads all extended attributes of `paths` (absolute, never followed if symlinks). */
export async function readXattrs(paths: readonly string[]): Promise<Map<string, Xattr[]>> {
  if (paths.length === 0) return new Map();
  const child = spawn(
    "xargs",
    // -s: as many paths per getfattr as the kernel allows (~1 MB), so one or two runs.
    [
      "-0",
      "-s",
      "1000000",
      "getfattr",
      "--dump",
      "--absolute-names",
      "--no-dereference",
      "--match=-",
      "--encoding=base64",
    ],
    { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } },
  );
  const out: Buffer[] = [];
  let err = "";
  child.stdout.on("data", (d: Buffer) => out.push(d));
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const done = new Promise<number>((resolve, reject) => {
    child.on("error", (e) =>
      reject(
        new RootstockError("TOOL_FAILED", `cannot run getfattr (install Debian package attr): ${e.message}`),
      ),
    );
    child.on("close", (code) => resolve(code ?? -1));
  });
  child.stdin.on("error", () => {}); // reported through the exit status
  child.stdin.end(Buffer.from(`${paths.join("\0")}\0`, "utf8"));
  const code = await done;
  if (code !== 0) {
    const first = err.trim().split("\n")[0] ?? "";
    throw new RootstockError(
      "TOOL_FAILED",
      code === 127 ? "getfattr not found (install Debian package attr)" : `getfattr failed: ${first}`,
    );
  }
  return parseGetfattrDump(Buffer.concat(out).toString("utf8"));
}
