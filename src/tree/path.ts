/**
 * Tree paths: relative, "/"-separated, no "." or ".." components, no leading or
 * trailing slash. The root directory is the empty path "".
 */
import { RootstockError } from "../errors.js";

/** A name that is not already a tree path: leading or trailing "/", "//", a "." or ".." component, NUL. */
const NEEDS_NORMALISING = /^\/|\/$|\/\/|(?:^|\/)\.\.?(?:\/|$)|\0|^$/;

/**
 * Normalises an archive or layer name ("./usr/bin/", "/etc//passwd") to a tree path.
 * Rejects names that could escape the root ("..", NUL) with UNSAFE_PATH naming `what`.
 */
export function normalisePath(name: string, what = name): string {
  // Most names are already normal: no empty, "." or ".." component, no NUL.
  if (!NEEDS_NORMALISING.test(name)) return name;
  if (name.includes("\0")) {
    throw new RootstockError("UNSAFE_PATH", `${JSON.stringify(what)}: NUL byte in path`);
  }
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      throw new RootstockError("UNSAFE_PATH", `${JSON.stringify(what)}: ".." component in path`);
    }
    parts.push(part);
  }
  return parts.join("/");
}

/** Parent path of a non-root path ("" for top-level entries). */
export function parentPath(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function joinPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

/** Whether `path` lies strictly inside directory `dir`. */
export function isInside(path: string, dir: string): boolean {
  return dir === ""
    ? path !== ""
    : path.length > dir.length && path.startsWith(dir) && path[dir.length] === "/";
}

/**
 * Orders strings by their UTF-8 bytes (= Unicode code point order), which is what
 * every tar and digest in rootstock sorts by. JS `<` compares UTF-16 code units and
 * puts U+E000..U+FFFF after astral characters; the fix-up below is ICU's.
 */
export function compareBytes(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}
