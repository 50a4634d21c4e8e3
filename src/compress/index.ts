/** Public surface of the compress module (see README.md). */
export {
  type ChunkedMetadata,
  checkTocMatchesTarSplit,
  decodeFile,
  fileRangeReader,
  type LayerDescriptorLike,
  MAX_TOC_SIZE,
  type RangeReader,
  readChunkedMetadata,
  rebuildTar,
  verifyChunkedBlob,
} from "./chunked-reader.js";
export { chunkSpans, RollsumChunker } from "./chunker.js";
export { Crc64, crc64 } from "./crc64.js";
export {
  ANNOTATION_TARSPLIT_POSITION,
  ANNOTATION_TOC_CHECKSUM,
  ANNOTATION_TOC_POSITION,
  type ChunkedPositions,
  LEGACY_ANNOTATION_TOC_CHECKSUM,
  LEGACY_ANNOTATION_TOC_POSITION,
  parseChunkedAnnotations,
} from "./footer.js";
export {
  CHUNKED_DEFAULT_LEVEL,
  CHUNKED_FAST_LEVEL,
  type Compression,
  compressionOf,
  type DecodeDescriptor,
  decodeLayer,
  type EncodedLayer,
  type EncodeOptions,
  encodeLayer,
  encodeLayerToFile,
  MEDIA_TYPE_TAR,
  MEDIA_TYPE_TAR_GZIP,
  MEDIA_TYPE_TAR_ZSTD,
} from "./layer.js";
export { parseTarSplit, type TarSplitEntry, tarSizeFromTarSplit } from "./tarsplit.js";
export {
  type FileRanges,
  type FrameRange,
  fileRanges,
  parseToc,
  serializeToc,
  type Toc,
  type TocEntry,
  tocEntryFromHeader,
} from "./toc.js";
