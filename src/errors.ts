/**
 * One error class for the whole project. Core modules throw RootstockError with a
 * code the CLI maps to an exit status and a one-line message; `cause` keeps the
 * underlying error for --debug.
 */
export type ErrorCode =
  | "INVALID_ARGUMENT" // a caller passed something malformed (a reference, an option)
  | "INVALID_FORMAT" // a document (manifest, index.json, images.yaml) fails validation
  | "DIGEST_MISMATCH" // bytes do not hash to the digest that names them
  | "SIZE_MISMATCH" // a stream ended shorter or longer than declared
  | "TAR_FORMAT" // a tar archive is malformed (bad checksum, truncated, bad field)
  | "TAR_UNSUPPORTED" // a well-formed tar entry we refuse (sparse, unknown type)
  | "CHUNKED_FORMAT" // a zstd:chunked blob's TOC, tar-split or footer is wrong
  | "COMPRESSION" // a compressed stream cannot be decoded
  | "NOT_FOUND" // a blob, ref, tag or file that should exist does not
  | "ALREADY_EXISTS" // a target exists and the caller did not ask to replace it
  | "STORE_CORRUPT" // fsck-level damage in the content store
  | "LOCKED" // another process holds a lock we need
  | "UNSAFE_PATH" // an entry would write outside its target
  | "REGISTRY" // a registry answered with an error (see RegistryError)
  | "NETWORK" // a connection failed or timed out
  | "UNAUTHORIZED" // credentials missing or refused
  | "PERMISSION" // the OS refused (not root, no unshare)
  | "TOOL_FAILED" // an external program (mmdebstrap, chroot) failed
  | "INTERNAL"; // a bug: an invariant did not hold

export class RootstockError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RootstockError";
    this.code = code;
  }
}

/** True when `err` is a RootstockError, optionally of one of `codes`. */
export function isRootstockError(err: unknown, ...codes: ErrorCode[]): err is RootstockError {
  return err instanceof RootstockError && (codes.length === 0 || codes.includes(err.code));
}

const OS_ERROR_CODES: Record<string, ErrorCode> = {
  ENOENT: "NOT_FOUND",
  ENOTDIR: "NOT_FOUND",
  EACCES: "PERMISSION",
  EPERM: "PERMISSION",
  EROFS: "PERMISSION",
  ENOSPC: "PERMISSION",
  EDQUOT: "PERMISSION",
  EEXIST: "ALREADY_EXISTS",
  EISDIR: "INVALID_ARGUMENT",
};

/**
 * A file-system error from Node (code, syscall, path) that reached the top without
 * being wrapped, as a one-line RootstockError ("cannot open PATH: no such file or
 * directory"); undefined for anything else, which stays an internal error.
 */
export function fromOsError(err: unknown): RootstockError | undefined {
  const e = err as NodeJS.ErrnoException & { dest?: string };
  if (!(err instanceof Error) || typeof e.code !== "string" || typeof e.path !== "string") return undefined;
  const code = OS_ERROR_CODES[e.code];
  if (!code) return undefined;
  // Node's message is "CODE: description, syscall 'path'": keep the description.
  const description = /^[A-Z]+: ([^,]+)/.exec(e.message)?.[1] ?? e.code;
  const target = e.dest ? `${e.path} → ${e.dest}` : e.path;
  return new RootstockError(code, `cannot ${e.syscall ?? "access"} ${target}: ${description}`, {
    cause: err,
  });
}
