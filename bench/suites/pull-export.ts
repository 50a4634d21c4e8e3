/**
 * `npm run bench -- pull-export`: the farm side in one run: full and partial pulls
 * next to podman (bench/suites/pull.ts), then exports next to podman export, umoci,
 * ostree and tar (bench/suites/export.ts).
 */
import { run as runExport } from "./export.js";
import { run as runPull } from "./pull.js";

export async function run(): Promise<string> {
  return `${await runPull()}\n${await runExport()}`;
}
