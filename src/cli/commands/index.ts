import type { Command } from "commander";
import type { CommandContext } from "../context.js";
import { registerBuild } from "./build.js";
import { registerCopy } from "./copy.js";
import { registerDigest } from "./digest.js";
import { registerExport } from "./export.js";
import { registerImport } from "./import.js";
import { registerInspect } from "./inspect.js";
import { registerPull } from "./pull.js";
import { registerStore } from "./store.js";

/** A command module adds its subcommand(s) to the program; `context()` reads the global options. */
export type RegisterCommand = (program: Command, context: () => CommandContext) => void;

export const commands: RegisterCommand[] = [
  registerBuild,
  registerCopy,
  registerDigest,
  registerExport,
  registerImport,
  registerInspect,
  registerPull,
  registerStore,
];
