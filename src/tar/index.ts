/** Public surface of the tar module. */

export {
  BLOCK_SIZE,
  blockPadding,
  END_OF_ARCHIVE,
  encodeHeader,
  formatPaxTime,
  isHeaderOnlyType,
  typeForTypeflag,
  typeflagForType,
} from "./header.js";
export {
  collectBytes,
  type ReadTarOptions,
  readFileChunks,
  readTar,
  readTarFile,
  type TarEntry,
  TarReader,
  type TarTrailer,
} from "./reader.js";
export type { TarEntryType, TarHeader, TarTime } from "./types.js";
export {
  isOpaque,
  isWhiteout,
  makeOpaqueName,
  makeWhiteoutName,
  OPAQUE_WHITEOUT,
  opaqueDirectory,
  WHITEOUT_PREFIX,
  whiteoutTarget,
} from "./whiteout.js";
export {
  coalesceChunks,
  reemitTar,
  type TarNewEntry,
  type TarPayload,
  type TarRawEntry,
  type TarRawTrailer,
  type TarSink,
  type TarWriteItem,
  TarWriter,
  writeChunksToFile,
  writeTar,
} from "./writer.js";
