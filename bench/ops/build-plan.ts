/**
 * bench op: `rootstock plan` on an images.yaml. argv: IMAGES_YAML STATE_JSON [--write-state].
 * With --write-state, writes the destination state as it would be after building every
 * image (tags + input records); otherwise reads it and plans against it. Prints the
 * number of images the plan keeps (a no-change re-plan keeps them all).
 */
import { readFile, writeFile } from "node:fs/promises";
import { loadGraph } from "../../src/build/graph.js";
import { hashInputFiles } from "../../src/build/inputs.js";
import { type DestinationState, plan } from "../../src/build/plan.js";

const [file, stateFile, flag] = process.argv.slice(2);
if (!file || !stateFile) throw new Error("usage: build-plan IMAGES_YAML STATE_JSON [--write-state]");
const graph = loadGraph(await readFile(file, "utf8"), file);
const files = await hashInputFiles(graph);
if (flag === "--write-state") {
  const built = plan(graph, files, { tags: {}, lastBuild: {} }, { channel: "post-merge" });
  const state: DestinationState = { tags: {}, lastBuild: {} };
  for (const image of built.images) {
    state.tags[image.repository] = [image.tag];
    state.lastBuild[image.repository] = image.record;
  }
  await writeFile(stateFile, JSON.stringify(state));
} else {
  const state = JSON.parse(await readFile(stateFile, "utf8")) as DestinationState;
  const result = plan(graph, files, state, { channel: "post-merge" });
  const kept = result.images.filter((i) => i.action === "keep").length;
  if (kept !== result.images.length)
    throw new Error(`no-change re-plan rebuilds ${result.images.length - kept} images`);
  console.log(kept);
}
