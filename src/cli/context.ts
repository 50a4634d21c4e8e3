/** What every command gets from the global options: where the store is, how to print. */
import { resolve } from "node:path";
import type { EndpointOptions } from "../image/endpoint.js";
import { type Platform, parsePlatform } from "../oci/platform.js";
import type { ProgressSink } from "../progress.js";
import { createProgressRenderer } from "./progress.js";

export interface GlobalOptions {
  store?: string;
  json?: boolean;
  quiet?: boolean;
  progress?: "auto" | "plain" | "none";
  debug?: boolean;
  tlsVerify?: string;
  platform?: string;
}

export interface CommandContext {
  storeDir: string;
  /** Options for opening any image reference (store, layout, registry). */
  endpoint: EndpointOptions;
  /** `--platform os/arch[/variant]` for indexes, when given. */
  platform?: Platform;
  json: boolean;
  progress: ProgressSink & { finish(): void };
  /** Prints a result: JSON with --json, else the human form. */
  print(human: string, data?: unknown): void;
}

export function makeContext(opts: GlobalOptions): CommandContext {
  const json = opts.json === true;
  const mode =
    opts.quiet || opts.progress === "none" ? "quiet" : opts.progress === "plain" ? "plain" : "auto";
  const storeDir = resolve(opts.store ?? process.env.ROOTSTOCK_STORE ?? ".rootstock");
  // Undefined lets registries.conf decide, as podman does.
  const insecure = opts.tlsVerify === undefined ? undefined : !["true", "1", "yes"].includes(opts.tlsVerify);
  return {
    storeDir,
    endpoint: { storeDir, registry: { insecure } },
    platform: opts.platform ? parsePlatform(opts.platform) : undefined,
    json,
    progress: createProgressRenderer(process.stderr, mode),
    print(human, data) {
      if (json) process.stdout.write(`${JSON.stringify(data ?? human, null, 2)}\n`);
      else if (human.length > 0) process.stdout.write(human.endsWith("\n") ? human : `${human}\n`);
    },
  };
}
