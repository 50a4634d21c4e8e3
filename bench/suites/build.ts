/**
 * The build module's planning speed: a no-change re-plan of the Mesa example (parse,
 * validate, hash every input file, compute tags, compare with the destination) as a
 * fresh process, next to the floor: starting Node with tsx and doing nothing, and
 * sha256sum of the same input files. Goal: under 2 s.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatTable, type Measurement, measure, ourOp } from "../lib.js";

export async function run(): Promise<string> {
  const file = "examples/mesa/images.yaml";
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-build-"));
  const state = join(work, "state.json");
  try {
    await measure("write state", ourOp("build-plan", file, state, "--write-state"));
    const rows: Measurement[] = [
      await measure("node + tsx, empty script", [process.execPath, "--import", "tsx", "-e", ""]),
      await measure(
        "sha256sum of the example's files",
        "find examples/mesa -type f | xargs sha256sum >/dev/null",
      ),
      {
        ...(await measure("rootstock plan, no change (10 images)", ourOp("build-plan", file, state))),
        note: "goal < 2 s",
      },
    ];
    return formatTable("build: no-change re-plan of examples/mesa", rows, "node + tsx, empty script");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
