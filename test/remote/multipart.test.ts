import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isRootstockError } from "../../src/errors.js";
import { type MultipartEvent, multipartBoundary, parseByteranges } from "../../src/remote/multipart.js";

function body(parts: [string, string][], boundary = "B0UND", opts: { leadingCrlf?: boolean } = {}): string {
  let out = opts.leadingCrlf ? "\r\n" : "";
  for (const [range, data] of parts) {
    out += `--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${range}\r\n\r\n${data}\r\n`;
  }
  return `${out}--${boundary}--\r\n`;
}

async function* split(text: string, step: number): AsyncGenerator<Uint8Array> {
  const bytes = Buffer.from(text, "latin1");
  for (let i = 0; i < bytes.length; i += step) yield bytes.subarray(i, i + step);
}

async function parse(text: string, step: number, boundary = "B0UND") {
  const parts: { start: number; end: number; data: string }[] = [];
  for await (const e of parseByteranges(
    split(text, step),
    boundary,
    "test",
  ) as AsyncGenerator<MultipartEvent>) {
    if (e.kind === "part") parts.push({ start: e.range.start, end: e.range.end, data: "" });
    else parts[parts.length - 1]!.data += Buffer.from(e.bytes).toString("latin1");
  }
  return parts;
}

describe("multipart/byteranges parser", () => {
  it("reads the boundary parameter, quoted or not", () => {
    assert.equal(multipartBoundary("multipart/byteranges; boundary=abc123"), "abc123");
    assert.equal(multipartBoundary('multipart/byteranges; boundary="a b"'), "a b");
    assert.equal(multipartBoundary("application/octet-stream"), undefined);
    assert.equal(multipartBoundary("multipart/byteranges"), undefined);
  });

  it("parses parts whatever the chunking, data containing CRLF and boundary-like bytes", async () => {
    const data2 = "x\r\n--B0UND\r\nlooks like a boundary";
    const text = body([
      ["0-4/100", "hello"],
      [`10-${10 + data2.length - 1}/100`, data2],
    ]);
    for (const step of [1, 2, 3, 17, text.length]) {
      assert.deepEqual(await parse(text, step), [
        { start: 0, end: 5, data: "hello" },
        { start: 10, end: 10 + data2.length, data: data2 },
      ]);
    }
    // nginx puts a CRLF before the first delimiter.
    assert.equal((await parse(body([["0-0/1", "z"]], "B0UND", { leadingCrlf: true }), 4)).length, 1);
  });

  const rejects = async (text: string, pattern: RegExp, boundary = "B0UND") =>
    assert.rejects(
      parse(text, 5, boundary),
      (err) => isRootstockError(err, "REGISTRY") && pattern.test(err.message),
    );

  it("rejects a wrong boundary", async () => {
    await rejects(body([["0-4/100", "hello"]], "OTHER"), /does not start with the boundary/);
  });

  it("rejects a part longer than its Content-Range", async () => {
    await rejects(body([["0-3/100", "hello"]]), /not followed by the boundary/);
  });

  it("rejects a body cut short", async () => {
    const text = body([["0-4/100", "hello"]]);
    await rejects(text.slice(0, text.indexOf("hello") + 3), /ends 2 bytes early/);
    await rejects(text.slice(0, text.length - 4), /truncated|not followed/);
  });

  it("rejects a part without Content-Range, and a body without parts", async () => {
    await rejects("--B0UND\r\nContent-Type: x\r\n\r\nabc\r\n--B0UND--\r\n", /missing or bad Content-Range/);
    await rejects("--B0UND--\r\n", /no parts/);
  });
});
