/** What every command gets from the global options: where the store is, how to print. */
import { resolve } from "node:path";
import type { ProgressSink } from "../progress.js";
import { createProgressRenderer } from "./progress.js";

export interface GlobalOptions {
  store?: string;
  json?: boolean;
  quiet?: boolean;
  progress?: "auto" | "plain" | "none";
  debug?: boolean;
}

export interface CommandContext {
  storeDir: string;
  json: boolean;
  progress: ProgressSink & { finish(): void };
  /** Prints a result: JSON with --json, else the human form. */
  print(human: string, data?: unknown): void;
}

export function makeContext(opts: GlobalOptions): CommandContext {
  const json = opts.json === true;
  const mode =
    opts.quiet || opts.progress === "none" ? "quiet" : opts.progress === "plain" ? "plain" : "auto";
  return {
    storeDir: resolve(opts.store ?? process.env.ROOTSTOCK_STORE ?? ".rootstock"),
    json,
    progress: createProgressRenderer(process.stderr, mode),
    print(human, data) {
      if (json) process.stdout.write(`${JSON.stringify(data ?? human, null, 2)}\n`);
      else if (human.length > 0) process.stdout.write(human.endsWith("\n") ? human : `${human}\n`);
    },
  };
}
