/**
 * A streaming, strict parser of `multipart/byteranges` bodies (RFC 9110 §14.6): the
 * answer to a Range header naming several ranges. Each part's Content-Range tells
 * its length, so part bodies are read by count (never scanned for the boundary) and
 * then the delimiter must follow exactly: a wrong boundary, a missing
 * Content-Range or a body cut short is an error, not a guess.
 */
import { RootstockError } from "../errors.js";
import { type ContentRange, parseContentRange } from "./ranges.js";

export type MultipartEvent =
  | { kind: "part"; range: ContentRange; contentType: string | undefined }
  | { kind: "data"; bytes: Uint8Array };

const CRLF = Buffer.from("\r\n");
const MAX_HEADER_BYTES = 16 * 1024;

/** The boundary parameter of a `multipart/byteranges` Content-Type, or undefined. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const [type, ...params] = contentType.split(";");
  if (type?.trim().toLowerCase() !== "multipart/byteranges") return undefined;
  for (const param of params) {
    const m = /^\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s";]{1,70}))\s*$/i.exec(param);
    if (m) return m[1] ?? m[2];
  }
  return undefined;
}

/** Pulls bytes from an async iterable on demand, keeping what is not consumed yet. */
class ByteReader {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly iterator: AsyncIterator<Uint8Array>;
  private ended = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** Reads until at least `n` bytes are buffered; false when the source ended first. */
  async fill(n: number): Promise<boolean> {
    while (this.buffer.length < n && !this.ended) {
      const next = await this.iterator.next();
      if (next.done) this.ended = true;
      else if (next.value.length > 0) {
        this.buffer =
          this.buffer.length === 0 ? Buffer.from(next.value) : Buffer.concat([this.buffer, next.value]);
      }
    }
    return this.buffer.length >= n;
  }

  peek(n: number): Buffer {
    return this.buffer.subarray(0, n);
  }

  take(n: number): Buffer {
    const head = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return head;
  }

  /** Buffered bytes, or the next chunk of the source; empty at the end. */
  async takeSome(max: number): Promise<Buffer> {
    if (this.buffer.length === 0) await this.fill(1);
    return this.take(Math.min(max, this.buffer.length));
  }

  /** Reads up to and excluding `marker`, which is consumed too; undefined if not within `max` bytes. */
  async readUntil(marker: Buffer, max: number): Promise<Buffer | undefined> {
    let searchFrom = 0;
    for (;;) {
      const at = this.buffer.indexOf(marker, searchFrom);
      if (at >= 0) {
        const head = Buffer.from(this.take(at));
        this.take(marker.length);
        return head;
      }
      if (this.buffer.length > max) return undefined;
      searchFrom = Math.max(0, this.buffer.length - marker.length + 1);
      if (!(await this.fill(this.buffer.length + 1))) return undefined;
    }
  }

  async return(): Promise<void> {
    await this.iterator.return?.();
  }
}

/**
 * Parses the body: yields a `part` event (its Content-Range) followed by `data`
 * events holding exactly that part's bytes, for each part in order. `where` names
 * the blob in errors.
 */
export async function* parseByteranges(
  source: AsyncIterable<Uint8Array>,
  boundary: string,
  where: string,
): AsyncGenerator<MultipartEvent> {
  const fail = (why: string): RootstockError =>
    new RootstockError("REGISTRY", `${where}: malformed multipart/byteranges body: ${why}`);
  const delimiter = Buffer.from(`--${boundary}`);
  const reader = new ByteReader(source);
  try {
    // Optional CRLF before the first delimiter (nginx writes one, Go does not).
    if (!(await reader.fill(2))) throw fail("empty body");
    if (reader.peek(2).equals(CRLF)) reader.take(2);
    if (!(await reader.fill(delimiter.length)) || !reader.peek(delimiter.length).equals(delimiter)) {
      throw fail(`body does not start with the boundary "${boundary}"`);
    }
    reader.take(delimiter.length);
    let parts = 0;
    for (;;) {
      // After a delimiter: "--" closes the body, CRLF opens a part.
      if (!(await reader.fill(2))) throw fail(`truncated after part ${parts}`);
      const after = reader.take(2).toString("latin1");
      if (after === "--") {
        if (parts === 0) throw fail("no parts");
        return; // the epilogue, if any, carries nothing
      }
      if (after !== "\r\n") throw fail(`boundary "${boundary}" not followed by CRLF`);
      const headerBlock = await reader.readUntil(Buffer.from("\r\n\r\n"), MAX_HEADER_BYTES);
      if (headerBlock === undefined) throw fail(`part ${parts + 1}: headers not terminated`);
      const headers = parsePartHeaders(headerBlock.toString("latin1"));
      const range = parseContentRange(headers.get("content-range"));
      if (!range) {
        throw fail(
          `part ${parts + 1}: missing or bad Content-Range ${JSON.stringify(headers.get("content-range") ?? "")}`,
        );
      }
      parts++;
      yield { kind: "part", range, contentType: headers.get("content-type") };
      let remaining = range.end - range.start;
      while (remaining > 0) {
        const bytes = await reader.takeSome(remaining);
        if (bytes.length === 0) throw fail(`part ${parts}: body ends ${remaining} bytes early`);
        remaining -= bytes.length;
        yield { kind: "data", bytes };
      }
      const closing = Buffer.concat([CRLF, delimiter]);
      if (!(await reader.fill(closing.length)) || !reader.peek(closing.length).equals(closing)) {
        throw fail(`part ${parts}: not followed by the boundary "${boundary}"`);
      }
      reader.take(closing.length);
    }
  } finally {
    await reader.return();
  }
}

function parsePartHeaders(block: string): Map<string, string> {
  const headers = new Map<string, string>();
  for (const line of block.split("\r\n")) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return headers;
}
