/**
 * Device nodes and fifos, which Node cannot create: one `sh` run calls `mknod` for a
 * whole batch. Shared by the safe directory writer (copy mode, or a farm that cannot
 * hold them) and the hardlink farm (made once, then linked by every export). Also the
 * one place that runs a helper tool and words its failure.
 */
import { spawn } from "node:child_process";
import { RootstockError } from "../errors.js";

export interface SpecialFile {
  /** Absolute path, not existing yet; the node is made with mode 0 (the caller sets it). */
  path: string;
  type: "char" | "block" | "fifo";
  major: number;
  minor: number;
}

/** Runs a tool to its end; TOOL_FAILED with its first line of stderr otherwise. */
export function runTool(cmd: string, args: string[], what: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", (err) =>
      reject(new RootstockError("TOOL_FAILED", `${what}: ${err.message}`, { cause: err })),
    );
    child.on("close", (code) => {
      if (code === 0) resolvePromise();
      else
        reject(
          new RootstockError("TOOL_FAILED", `${what}: ${stderr.trim().split("\n")[0] ?? `exit ${code}`}`),
        );
    });
  });
}

/** Makes every node of `files` (devices need root). */
export async function makeSpecialFiles(files: SpecialFile[]): Promise<void> {
  const args: string[] = [];
  for (const f of files) {
    const kind = f.type === "fifo" ? "p" : f.type === "char" ? "c" : "b";
    args.push(f.path, kind, String(f.major), String(f.minor));
  }
  for (let i = 0; i < args.length; i += 4000) {
    // The script runs `mknod -m 0 PATH TYPE [MAJOR MINOR]` per quadruple; a fifo takes no numbers.
    const script =
      'while [ $# -gt 0 ]; do if [ "$2" = p ]; then mknod -m 0 -- "$1" p; else mknod -m 0 -- "$1" "$2" "$3" "$4"; fi || exit 1; shift 4; done';
    await runTool("sh", ["-c", script, "sh", ...args.slice(i, i + 4000)], "mknod");
  }
}
