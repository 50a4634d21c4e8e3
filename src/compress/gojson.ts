/**
 * The few pieces of Go's encoding/json and time formatting that zstd:chunked
 * metadata depends on byte for byte, and a strict JSON parser for untrusted TOCs.
 */
import { RootstockError } from "../errors.js";
import type { TarTime } from "../tar/types.js";

const HEX = "0123456789abcdef";

/** A JSON string literal as Go's encoder writes it (HTML-safe escapes, U+2028/9). */
export function goString(s: string): string {
  let out = '"';
  let plainFrom = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | undefined;
    if (
      c < 0x20 ||
      c === 0x22 ||
      c === 0x5c ||
      c === 0x3c ||
      c === 0x3e ||
      c === 0x26 ||
      c === 0x2028 ||
      c === 0x2029
    ) {
      if (c === 0x22) esc = '\\"';
      else if (c === 0x5c) esc = "\\\\";
      else if (c === 0x0a) esc = "\\n";
      else if (c === 0x0d) esc = "\\r";
      else if (c === 0x09) esc = "\\t";
      else esc = `\\u${HEX[c >> 12]}${HEX[(c >> 8) & 15]}${HEX[(c >> 4) & 15]}${HEX[c & 15]}`;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      // Lone surrogates cannot come from UTF-8: Go writes U+FFFD for invalid bytes.
      const next = s.charCodeAt(i + 1);
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      esc = "\ufffd";
    }
    if (esc !== undefined) {
      out += s.slice(plainFrom, i) + esc;
      plainFrom = i + 1;
    }
  }
  return `${out + s.slice(plainFrom)}"`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** Go's time.Time.MarshalJSON (RFC 3339 with trailing-zero-trimmed nanoseconds), in UTC. */
export function goTime(t: TarTime): string {
  const d = new Date(t.sec * 1000);
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) {
    throw new RootstockError("CHUNKED_FORMAT", `time ${t.sec}s is outside the years 0..9999 JSON can hold`);
  }
  let s = `${pad(year, 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}`;
  if (t.nsec > 0) s += `.${pad(t.nsec, 9).replace(/0+$/, "")}`;
  return `${s}Z`;
}

const RFC3339_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 time (any zone offset) to an instant; `what` names the field. */
export function parseGoTime(s: string, what: string): TarTime {
  const m = RFC3339_RE.exec(s);
  if (!m) throw new RootstockError("CHUNKED_FORMAT", `${what}: not an RFC 3339 time: ${JSON.stringify(s)}`);
  const [, y, mo, d, h, mi, se, frac, zone] = m as unknown as string[];
  const days = Date.UTC(Number(y), Number(mo) - 1, Number(d)) / 86400_000;
  const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (Number(y) < 100) check.setUTCFullYear(Number(y));
  if (check.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(se) > 59) {
    throw new RootstockError("CHUNKED_FORMAT", `${what}: invalid date ${JSON.stringify(s)}`);
  }
  let dayNumber = days;
  if (Number(y) < 100) dayNumber = check.getTime() / 86400_000;
  let sec = dayNumber * 86400 + Number(h) * 3600 + Number(mi) * 60 + Number(se);
  if (zone && zone !== "Z" && zone !== "z") {
    const sign = zone[0] === "-" ? -1 : 1;
    sec -= sign * (Number(zone.slice(1, 3)) * 3600 + Number(zone.slice(4, 6)) * 60);
  }
  const nsec = frac ? Number(frac.padEnd(9, "0")) : 0;
  return { sec, nsec };
}

/** A parsed JSON value where objects keep their keys in order and duplicates are refused. */
export type JsonValue = null | boolean | number | string | JsonValue[] | Map<string, JsonValue>;

/**
 * Strict JSON parser: one value, only whitespace around it, duplicate object keys
 * refused (a TOC digest must cover exactly one reading of the document).
 * Integers beyond 2^53 are refused rather than rounded.
 */
export function parseStrictJson(text: string, what: string): JsonValue {
  let i = 0;
  const fail = (msg: string): never => {
    throw new RootstockError("CHUNKED_FORMAT", `${what}: ${msg} at offset ${i}`);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  const parseString = (): string => {
    i++; // opening quote
    let out = "";
    let from = i;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail("unterminated string");
      if (c === 0x22) {
        out += text.slice(from, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(from, i);
        const e = text[i + 1];
        i += 2;
        if (e === "u") {
          const hex = text.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(Number.parseInt(hex, 16));
          i += 4;
        } else {
          const map: Record<string, string> = {
            '"': '"',
            "\\": "\\",
            "/": "/",
            b: "\b",
            f: "\f",
            n: "\n",
            r: "\r",
            t: "\t",
          };
          const v = e === undefined ? undefined : map[e];
          if (v === undefined) fail("bad escape");
          out += v;
        }
        from = i;
      } else i++;
    }
  };
  const NUM_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const parseValue = (depth: number): JsonValue => {
    if (depth > 64) fail("nesting too deep");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = new Map<string, JsonValue>();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const key = parseString();
        if (obj.has(key)) fail(`duplicate key ${JSON.stringify(key)}`);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        obj.set(key, parseValue(depth + 1));
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return obj;
        } else fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return arr;
        } else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    NUM_RE.lastIndex = i;
    const m = NUM_RE.exec(text);
    if (!m) return fail("unexpected character");
    i += m[0].length;
    const n = Number(m[0]);
    if (!Number.isFinite(n) || (Number.isInteger(n) && !Number.isSafeInteger(n)))
      fail(`number out of range ${m[0]}`);
    return n;
  };
  const value = parseValue(0);
  ws();
  if (i !== text.length) fail("unexpected data after the document");
  return value;
}
