/**
 * The build module's public surface: images.yaml → graph → tags → plan → CI;
 * producers; building, destinations, channels. (The CLI imports the files it needs
 * directly, so `plan` does not load the layer and compression code.)
 */
export {
  defaultChannel,
  type ExpiredTag,
  expirePreMerge,
  type PromoteResult,
  parseAge,
  promote,
  promoteManifest,
} from "./channels.js";
export {
  buildJobName,
  exportJobName,
  type GitlabCiOptions,
  generateGitlabCi,
  promoteJobName,
} from "./ci-gitlab.js";
export {
  type Destination,
  LATEST_TAG,
  parseDestination,
  planBuild,
  readDestinationState,
  readImage,
  readRecord,
} from "./destination.js";
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
export { clampTreeTimes, copyRootfs, makeReproducible, unpackImage } from "./rootfs.js";
export {
  type BuildOptions,
  type BuildReport,
  type BuiltImage,
  buildImages,
  buildSet,
  DEFAULT_SOURCE_DATE_EPOCH,
  PARENT_LABEL,
  VERSION_LABEL,
} from "./run.js";
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
