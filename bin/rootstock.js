#!/usr/bin/env node
// Runs the compiled CLI (dist/, from `npm run build`) when it is at least as new as
// every source file, otherwise the TypeScript sources through tsx: a stale build is
// never run, and a fresh one saves the transpiling at every start.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const built = join(root, "dist", "cli", "main.js");

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const fresh = existsSync(built) && statSync(built).mtimeMs >= newestSource(join(root, "src"));
if (fresh && process.env.ROOTSTOCK_FROM_SOURCE !== "1") {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(pathToFileURL(join(root, "src", "cli", "main.ts")).href);
}
