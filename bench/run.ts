/**
 * `npm run bench -- [SUITE...]`: runs benchmark suites and prints their tables.
 * Each suite lives in bench/suites/NAME.ts and exports `run(): Promise<string>`.
 */
import { execFileSync } from "node:child_process";
import { readdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";

// The CLI is measured as users run it, compiled: build dist/ from the sources first.
execFileSync(
  process.execPath,
  [fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url)), "-p", "tsconfig.json"],
  {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: "inherit",
  },
);

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
