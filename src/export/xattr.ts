/**
 * Setting extended attributes. Node has no xattr API; until the project picks a
 * native binding, one `setfattr --restore` run (Debian package attr) applies every
 * attribute of an export at once, with -h so a symlink's own attributes are set and
 * nothing is followed. Everything else in this module calls only `setXattrs`.
 */
import { spawn } from "node:child_process";
import { RootstockError } from "../errors.js";

export interface XattrTarget {
  /** Absolute path of the file, already created. */
  path: string;
  xattrs: Array<[name: string, value: Uint8Array]>;
}

/** getfattr's quoting, which setfattr --restore undoes: odd bytes become \ooo. */
function quote(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text)) {
    if (byte <= 0x20 || byte >= 0x7f || byte === 0x5c || byte === 0x3d) {
      out += `\\${byte.toString(8).padStart(3, "0")}`;
    } else {
      out += String.fromCharCode(byte);
    }
  }
  return out;
}

/** The dump format `setfattr --restore` reads. */
export function xattrDump(targets: XattrTarget[]): string {
  const parts: string[] = [];
  for (const t of targets) {
    parts.push(`# file: ${quote(t.path)}\n`);
    for (const [name, value] of t.xattrs) {
      const encoded = value.length === 0 ? '""' : `0x${Buffer.from(value).toString("hex")}`;
      parts.push(`${quote(name)}=${encoded}\n`);
    }
    parts.push("\n");
  }
  return parts.join("");
}

/** Applies all attributes in one process; TOOL_FAILED names the first complaint. */
export async function setXattrs(targets: XattrTarget[]): Promise<void> {
  const withAttrs = targets.filter((t) => t.xattrs.length > 0);
  if (withAttrs.length === 0) return;
  const dump = xattrDump(withAttrs);
  await new Promise<void>((resolve, reject) => {
    const child = spawn("setfattr", ["-h", "--restore=-"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", (err) =>
      reject(
        new RootstockError(
          "TOOL_FAILED",
          `cannot run setfattr (Debian package attr) to set xattrs on ${withAttrs[0]!.path}`,
          { cause: err },
        ),
      ),
    );
    child.on("close", (code) => {
      if (code === 0 && stderr === "") resolve();
      else {
        const first = stderr.trim().split("\n")[0] ?? `exit ${code}`;
        reject(new RootstockError("TOOL_FAILED", `setfattr: ${first}`));
      }
    });
    child.stdin.on("error", () => {});
    child.stdin.end(dump);
  });
}
