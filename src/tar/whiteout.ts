/**
 * OCI layer whiteouts (image-spec layer.md): `DIR/.wh.NAME` deletes DIR/NAME from the
 * lower layers; `DIR/.wh..wh..opq` makes DIR opaque (hides everything below it).
 * Pure string helpers on tar entry names; names are not cleaned beyond a trailing "/".
 */
import { RootstockError } from "../errors.js";

export const WHITEOUT_PREFIX = ".wh.";
export const OPAQUE_WHITEOUT = ".wh..wh..opq";

function split(path: string): [dir: string, base: string] {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const slash = trimmed.lastIndexOf("/");
  return slash < 0 ? ["", trimmed] : [trimmed.slice(0, slash + 1), trimmed.slice(slash + 1)];
}

/** True for `.wh.NAME` entries that delete NAME (not the opaque marker). */
export function isWhiteout(path: string): boolean {
  const [, base] = split(path);
  return base.startsWith(WHITEOUT_PREFIX) && base !== OPAQUE_WHITEOUT && base.length > WHITEOUT_PREFIX.length;
}

/** True for the opaque-directory marker `DIR/.wh..wh..opq`. */
export function isOpaque(path: string): boolean {
  return split(path)[1] === OPAQUE_WHITEOUT;
}

/** The path a whiteout deletes (`a/.wh.b` → `a/b`), or undefined for other names. */
export function whiteoutTarget(path: string): string | undefined {
  if (!isWhiteout(path)) return undefined;
  const [dir, base] = split(path);
  return dir + base.slice(WHITEOUT_PREFIX.length);
}

/** The directory an opaque marker applies to (`a/b/.wh..wh..opq` → `a/b`, top level → ""). */
export function opaqueDirectory(path: string): string | undefined {
  if (!isOpaque(path)) return undefined;
  return split(path)[0].replace(/\/$/, "");
}

/** The whiteout entry name that deletes `path` (`a/b` → `a/.wh.b`). */
export function makeWhiteoutName(path: string): string {
  const [dir, base] = split(path);
  if (base === "" || base === "." || base === ".." || base === "/") {
    throw new RootstockError("INVALID_ARGUMENT", `cannot make a whiteout for ${JSON.stringify(path)}`);
  }
  return `${dir}${WHITEOUT_PREFIX}${base}`;
}

/** The opaque marker entry name for directory `dir` ("" for the layer root). */
export function makeOpaqueName(dir: string): string {
  const trimmed = dir.replace(/\/+$/, "");
  return trimmed === "" ? OPAQUE_WHITEOUT : `${trimmed}/${OPAQUE_WHITEOUT}`;
}
