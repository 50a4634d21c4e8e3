/**
 * Runs an external program for a producer: output is kept (last lines) for the
 * error message, `::rootstock-step NAME` lines on stderr mark the step in progress
 * so a failure names it, and an AbortSignal kills the whole process group.
 */
import { spawn } from "node:child_process";
import { RootstockError } from "../../errors.js";
import type { ProgressSink } from "../../progress.js";

export const STEP_MARKER = "::rootstock-step ";

export interface ToolRun {
  /** What failed, for messages: "mmdebstrap", "script producer". */
  what: string;
  argv: string[];
  env?: NodeJS.ProcessEnv;
  progress: ProgressSink;
  signal?: AbortSignal;
}

const NOT_PERMITTED = /Operation not permitted|Permission denied|cannot open \/proc|unshare failed/i;

export async function runTool({ what, argv, env, progress, signal }: ToolRun): Promise<void> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new RootstockError("INTERNAL", `${what}: empty command`);
  signal?.throwIfAborted();
  const tail: string[] = [];
  let step: string | undefined;
  const child = spawn(cmd, args, {
    env: env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const onAbort = () => {
    if (child.pid) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // already gone
      }
    }
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (!line.trim()) continue;
      if (line.startsWith(STEP_MARKER)) {
        step = line.slice(STEP_MARKER.length);
        progress({ type: "note", message: `${what}: ${step}` });
        continue;
      }
      tail.push(line);
      if (tail.length > 20) tail.shift();
    }
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const code = await new Promise<number | string>((resolve, reject) => {
    child.on("error", (err) =>
      reject(new RootstockError("TOOL_FAILED", `${what}: cannot run ${cmd}: ${err.message}`, { cause: err })),
    );
    child.on("close", (status, sig) => resolve(status ?? sig ?? "unknown"));
  }).finally(() => signal?.removeEventListener("abort", onAbort));
  if (signal?.aborted)
    throw new RootstockError("TOOL_FAILED", `${what}: cancelled`, { cause: signal.reason });
  if (code === 0) return;
  const last = tail.filter((l) => !/^\s*$/.test(l)).at(-1) ?? "";
  const where = step ? ` during ${step}` : "";
  const detail = `${what} failed${where} (exit ${code})${last ? `: ${last}` : ""}`;
  const error = new RootstockError(
    NOT_PERMITTED.test(tail.join("\n")) && !step ? "PERMISSION" : "TOOL_FAILED",
    detail,
  );
  (error as RootstockError & { output?: string }).output = tail.join("\n");
  throw error;
}
