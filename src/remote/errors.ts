import { RootstockError } from "../errors.js";

/**
 * A registry answered with an error. Keeps the HTTP status and the OCI error code
 * from the body (`MANIFEST_UNKNOWN`, `DENIED`, ...) so callers can branch on them;
 * the message reads `127.0.0.1:5000/foo: MANIFEST_UNKNOWN (404): manifest unknown`.
 */
export class RegistryError extends RootstockError {
  readonly status: number;
  readonly ociCode: string | undefined;

  constructor(
    where: string,
    status: number,
    ociCode: string | undefined,
    detail: string,
    options?: { cause?: unknown },
  ) {
    const head = ociCode ? `${ociCode} (${status})` : `HTTP ${status}`;
    super("REGISTRY", `${where}: ${head}: ${detail}`, options);
    this.name = "RegistryError";
    this.status = status;
    this.ociCode = ociCode;
  }
}

/** The registry's error body (distribution spec §error codes), best effort. */
export interface OciErrorBody {
  code: string | undefined;
  message: string | undefined;
}

/** Reads the first `errors[]` entry of an error body; tolerant of anything else. */
export function parseErrorBody(text: string): OciErrorBody {
  try {
    const body = JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = body.errors?.[0];
    if (first) {
      return {
        code: typeof first.code === "string" ? first.code : undefined,
        message: typeof first.message === "string" ? first.message : undefined,
      };
    }
  } catch {
    // not JSON: fall through
  }
  return { code: undefined, message: undefined };
}

/** A short, printable excerpt of a non-JSON body (never more than one line). */
export function bodyExcerpt(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}

/** The error for a status when the body carried no OCI error. */
export function registryErrorFor(where: string, status: number, bodyText: string): RegistryError {
  const { code, message } = parseErrorBody(bodyText);
  const detail = message ?? (bodyText ? bodyExcerpt(bodyText) : defaultStatusText(status));
  return new RegistryError(where, status, code, detail);
}

function defaultStatusText(status: number): string {
  const known: Record<number, string> = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    416: "range not satisfiable",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
  };
  return known[status] ?? "unexpected status";
}
