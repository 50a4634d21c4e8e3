/** The build module's public surface: images.yaml → graph → tags → plan → CI; producers. */
export {
  buildJobName,
  exportJobName,
  type GitlabCiOptions,
  generateGitlabCi,
  promoteJobName,
} from "./ci-gitlab.js";
export {
  ARCHITECTURES,
  type ArchInfo,
  type BaseStep,
  filesRead,
  type Graph,
  type ImageNode,
  type ImportSource,
  loadGraph,
  type MmdebstrapOptions,
  resolveGraph,
  type ScriptStep,
} from "./graph.js";
export { hashInputFiles, resolveInside } from "./inputs.js";
export {
  type DestinationState,
  diffRecords,
  formatPlan,
  type Plan,
  type PlannedImage,
  plan,
  planToJson,
} from "./plan.js";
export { type ImageUnpacker, type ImportProducer, produceImport } from "./producers/import.js";
export { type MmdebstrapProducer, mmdebstrapArgs, produceMmdebstrap } from "./producers/mmdebstrap.js";
export { mountsUnder, removeTree, unmountAll } from "./producers/mounts.js";
export { produceScript, type ScriptProducer, scriptDriver } from "./producers/script.js";
export { type ParsedImagesFile, parseImagesFile } from "./schema.js";
export {
  type Channel,
  canonicalJson,
  channelTag,
  computeTags,
  type FileHashes,
  formatInputRecord,
  INPUTS_LABEL,
  type InputRecord,
  LAYER_FORMAT_VERSION,
  parseChannelTag,
  parseInputRecord,
  TAG_HASH_CHARS,
} from "./tags.js";
