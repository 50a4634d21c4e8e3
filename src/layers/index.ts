export { layerEntries, layerEntryOf } from "./entries.js";
export { type ExplodeOptions, type ExplodeResult, explodeLayer } from "./explode.js";
export { assembleFromStore, fileObjectContent, readRecordTarSplit, rebuildLayerTar } from "./rebuild.js";
export { LAYER_RECORD_VERSION, type LayerRecord } from "./record.js";
export { readLayerRecord, recordFileDigests, writeLayerRecord } from "./store.js";
export { type LayerUsage, layerUsage } from "./usage.js";
