import type { ErrorCode } from "../errors.js";

/**
 * Exit statuses, grouped so scripts can tell "you asked wrong" from "the data is bad"
 * from "the network failed". Documented in the README.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  badData: 4,
  remote: 5,
  conflict: 6,
} as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case "INVALID_ARGUMENT":
      return EXIT.usage;
    case "NOT_FOUND":
      return EXIT.notFound;
    case "INVALID_FORMAT":
    case "DIGEST_MISMATCH":
    case "SIZE_MISMATCH":
    case "TAR_FORMAT":
    case "TAR_UNSUPPORTED":
    case "CHUNKED_FORMAT":
    case "COMPRESSION":
    case "STORE_CORRUPT":
    case "UNSAFE_PATH":
      return EXIT.badData;
    case "REGISTRY":
    case "NETWORK":
    case "UNAUTHORIZED":
      return EXIT.remote;
    case "ALREADY_EXISTS":
    case "LOCKED":
    case "PERMISSION":
      return EXIT.conflict;
    case "TOOL_FAILED":
    case "INTERNAL":
      return EXIT.failure;
  }
}
