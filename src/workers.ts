/**
 * Worker threads running one of our own modules, the same way from `dist/` (plain
 * .js) and under tsx (tests, benches: .ts sources, and a worker does not inherit the
 * TypeScript loader, so it registers it before importing the body).
 */
import { Worker, type WorkerOptions } from "node:worker_threads";

/** The URL of module `name` (no extension) next to the module at `importMetaUrl`. */
export function siblingModule(importMetaUrl: string, name: string): URL {
  const ext = importMetaUrl.endsWith(".ts") ? "ts" : "js";
  return new URL(`./${name}.${ext}`, importMetaUrl);
}

export function spawnWorker(url: URL, options: WorkerOptions = {}): Worker {
  if (!url.pathname.endsWith(".ts")) return new Worker(url, options);
  // Resolved here: an eval worker resolves bare specifiers from the working directory,
  // which need not be inside this package.
  const tsx = import.meta.resolve("tsx/esm/api");
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(code, { ...options, eval: true });
}
