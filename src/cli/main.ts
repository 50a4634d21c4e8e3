/**
 * The rootstock command line: the only module that reads argv, prints and exits.
 * Each command lives in commands/NAME.ts and registers itself on the program.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { fromOsError, isRootstockError } from "../errors.js";
import { commands } from "./commands/index.js";
import { type CommandContext, type GlobalOptions, makeContext } from "./context.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

export function buildProgram(): Command {
  const program = new Command("rootstock")
    .description("One test environment for hardware CI farms, built once and delivered everywhere.")
    .version(pkg.version)
    .option("--store <dir>", "local content store (env ROOTSTOCK_STORE)", undefined)
    .option("--json", "machine-readable output on stdout")
    .option("-q, --quiet", "no progress output")
    .option("--progress <mode>", "progress display: auto | plain | none", "auto")
    .option("--debug", "show error causes and stacks")
    .option("--tls-verify <bool>", "verify registry TLS certificates; false also allows plain http")
    .option("--platform <os/arch[/variant]>", "platform to choose from multi-platform images")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  const context = (): CommandContext => makeContext(program.opts<GlobalOptions>());
  for (const register of commands) register(program, context);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version also arrive here with exit code 0.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const debug = program.opts<GlobalOptions>().debug === true;
    if (isRootstockError(err)) {
      process.stderr.write(`rootstock: ${err.message}\n`);
      if (debug && err.cause)
        process.stderr.write(`cause: ${String((err.cause as Error).stack ?? err.cause)}\n`);
      return exitCodeFor(err.code);
    }
    const os = fromOsError(err);
    if (os) {
      process.stderr.write(`rootstock: ${os.message}\n`);
      return exitCodeFor(os.code);
    }
    process.stderr.write(`rootstock: internal error: ${(err as Error).message ?? String(err)}\n`);
    if (debug) process.stderr.write(`${(err as Error).stack}\n`);
    return EXIT.failure;
  }
}

// `rootstock ... | head` closes stdout early: that is the reader's choice, not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(EXIT.ok);
  throw err;
});

process.exitCode = await main(process.argv);
