/**
 * `npm run bench -- [SUITE...]`: runs benchmark suites and prints their tables.
 * Each suite lives in bench/suites/NAME.ts and exports `run(): Promise<string>`.
 */
import { execFileSync } from "node:child_process";
import { readdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";

// Measured as users run it, compiled: dist/ for the CLI, and the ops (bench/ops, small
// scripts doing one thing) with the sources into .cache/bench-build: no TypeScript
// loader in the measured processes or their worker threads.
const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
for (const project of ["tsconfig.json", "tsconfig.bench.json"])
  execFileSync(process.execPath, [tsc, "-p", project], { cwd: root, stdio: "inherit" });

const suitesDir = fileURLToPath(new URL("./suites/", import.meta.url));
const available = (await readdir(suitesDir)).filter((f) => f.endsWith(".ts")).map((f) => f.slice(0, -3));
const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const suites = wanted.length > 0 ? wanted : available;
for (const name of suites) {
  if (!available.includes(name)) {
    console.error(`unknown suite ${name}; available: ${available.join(", ")}`);
    process.exit(2);
  }
  const mod = (await import(`./suites/${name}.ts`)) as { run: () => Promise<string> };
  console.log(await mod.run());
}
