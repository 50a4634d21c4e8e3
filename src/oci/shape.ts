/**
 * Document shapes checked without loading zod. Loading zod costs ~0.1 s at every
 * start (it is many modules), more than a pull of an unchanged image does in all,
 * yet every command parses manifests and configs. So each shape here is two
 * things: a plain `check` for the common case, a valid document, and the same
 * constraint as a zod schema, built only when a check fails, to word the error.
 *
 * A `check` may be stricter than its zod schema, never looser: when a check fails
 * the zod schema decides, so a strict check costs time, a loose one would let
 * through what zod refuses.
 */
import { createRequire } from "node:module";
import type { z as Z } from "zod";

type Zod = typeof Z;

export interface Shape<T> {
  check(value: unknown): boolean;
  /** The zod schema of the same constraint (for the error message). */
  zod(z: Zod): Z.ZodType;
  /** Type marker only. */
  readonly _type?: T;
}

/** A shape whose key may be absent from an object. */
export interface OptionalShape<T> extends Shape<T | undefined> {
  readonly optional: true;
}

export type Infer<S> = S extends Shape<infer T> ? T : never;

type Fields = Record<string, Shape<unknown>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type LooseObject<F extends Fields> = Simplify<
  { [K in keyof F as F[K] extends OptionalShape<unknown> ? never : K]: Infer<F[K]> } & {
    [K in keyof F as F[K] extends OptionalShape<unknown> ? K : never]?: Infer<F[K]>;
  } & { [key: string]: unknown }
>;

type ErrorText = (issue: { input: unknown }) => string | undefined;

export function string(opts: { min?: number; regex?: RegExp; error?: ErrorText } = {}): Shape<string> {
  const { min, regex, error } = opts;
  return {
    check: (v) =>
      typeof v === "string" && (min === undefined || v.length >= min) && (!regex || regex.test(v)),
    zod: (z) => {
      let s = z.string();
      if (min !== undefined) s = s.min(min);
      if (regex) s = s.regex(regex, error ? { error } : undefined);
      return s;
    },
  };
}

/** A non-negative integer (checked as a safe one: stricter than zod's int, never looser). */
export function count(): Shape<number> {
  return {
    check: (v) => Number.isSafeInteger(v) && (v as number) >= 0,
    zod: (z) => z.number().int().nonnegative(),
  };
}

export function boolean(): Shape<boolean> {
  return { check: (v) => typeof v === "boolean", zod: (z) => z.boolean() };
}

export function unknown(): Shape<unknown> {
  return { check: () => true, zod: (z) => z.unknown() };
}

export function literal<const L extends string | number>(value: L, error?: ErrorText): Shape<L> {
  return { check: (v) => v === value, zod: (z) => z.literal(value, error ? { error } : undefined) };
}

export function custom<T>(test: (v: unknown) => boolean, error: ErrorText | string): Shape<T> {
  return { check: test, zod: (z) => z.custom<T>(test, { error }) };
}

export function array<T>(item: Shape<T>): Shape<T[]> {
  return {
    check: (v) => Array.isArray(v) && v.every((x) => item.check(x)),
    zod: (z) => z.array(item.zod(z)),
  };
}

/** A plain object whose values all have `value`'s shape (JSON keys are strings). */
export function record<T>(value: Shape<T>): Shape<Record<string, T>> {
  return {
    check: (v) => isPlainObject(v) && Object.values(v).every((x) => value.check(x)),
    zod: (z) => z.record(z.string(), value.zod(z)),
  };
}

export function optional<T>(inner: Shape<T>): OptionalShape<T> {
  return {
    optional: true,
    check: (v) => v === undefined || inner.check(v),
    zod: (z) => inner.zod(z).optional(),
  };
}

/** Absent, null, or `inner` (Docker writes null for empty lists and maps). */
export function nullish<T>(inner: Shape<T>): OptionalShape<T | null> {
  return {
    optional: true,
    check: (v) => v === undefined || v === null || inner.check(v),
    zod: (z) => inner.zod(z).nullish(),
  };
}

/** An object with these fields; other fields are kept as they are. */
export function looseObject<F extends Fields>(fields: F): Shape<LooseObject<F>> {
  const entries = Object.entries(fields);
  return {
    check: (v) => isPlainObject(v) && entries.every(([key, shape]) => shape.check(v[key])),
    zod: (z) => z.looseObject(Object.fromEntries(entries.map(([key, shape]) => [key, shape.zod(z)]))),
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

let zod: Zod | undefined;

/** zod, loaded on the first document that fails its check. */
export function loadZod(): Zod {
  zod ??= (createRequire(import.meta.url)("zod") as { z: Zod }).z;
  return zod;
}
