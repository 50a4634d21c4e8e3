/** Public surface of the tar module. */

// Not tar-specific, but the tar module's readers take it: re-exported for their callers.
export { readFileChunks } from "../file-chunks.js";

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
