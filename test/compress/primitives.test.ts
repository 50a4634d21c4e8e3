import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { chunkSpans } from "../../src/compress/chunker.js";
import { Crc64 } from "../../src/compress/crc64.js";
import {
  chunkedAnnotations,
  decodeFooter,
  encodeFooterFrame,
  parseChunkedAnnotations,
} from "../../src/compress/footer.js";
import { goString, goTime, parseGoTime } from "../../src/compress/gojson.js";
import { fileRanges, parseToc, serializeToc, type Toc } from "../../src/compress/toc.js";
import { zstdCompress, zstdDecompress } from "../../src/compress/zstd.js";
import { isRootstockError } from "../../src/errors.js";

/** §5 test vector: sha256("0")..sha256("8191") raw, 2048 zeros, then the first 10000 bytes again. */
function vectorPayload(): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < 8192; i++) parts.push(createHash("sha256").update(String(i)).digest());
  const seq = Buffer.concat(parts);
  return Buffer.concat([seq, Buffer.alloc(2048), seq.subarray(0, 10000)]);
}

describe("crc64", () => {
  it("has the CRC-64/ISO check value and is split-invariant", () => {
    assert.equal(new Crc64().update(Buffer.from("123456789")).hex(), "b90956c775a41001");
    assert.equal(new Crc64().hex(), "0000000000000000");
    const data = vectorPayload();
    const whole = new Crc64().update(data).hex();
    const split = new Crc64();
    for (let i = 0; i < data.length; i += 4097) split.update(data.subarray(i, i + 4097));
    assert.equal(split.hex(), whole);
    assert.notEqual(whole, new Crc64().update(data.subarray(1)).hex());
  });

  it("matches a bitwise reference at every alignment and length", () => {
    // Bit-at-a-time CRC-64/ISO with BigInt: slow, but shares nothing with the tables.
    const reference = (bytes: Uint8Array): string => {
      let crc = 0xffffffffffffffffn;
      for (const byte of bytes) {
        crc ^= BigInt(byte);
        for (let k = 0; k < 8; k++) crc = crc & 1n ? (crc >> 1n) ^ 0xd800000000000000n : crc >> 1n;
      }
      return (crc ^ 0xffffffffffffffffn).toString(16).padStart(16, "0");
    };
    const data = vectorPayload().subarray(0, 300);
    for (let start = 0; start < 9; start++) {
      for (const len of [0, 1, 7, 8, 9, 15, 16, 17, 100, 291]) {
        const part = data.subarray(start, start + len);
        assert.equal(new Crc64().update(part).hex(), reference(part), `offset ${start} length ${len}`);
      }
    }
  });
});

describe("rollsum chunker", () => {
  it("reproduces the §5 test vector whatever the piece size", () => {
    const p = vectorPayload();
    assert.equal(p.length, 274192);
    assert.equal(
      createHash("sha256").update(p).digest("hex"),
      "dfbb94ecd4b1b3eec04c804d30118ff37cef0558930de3b596cacafec8b6b5ab",
    );
    const expected =
      "(0,16094) (16094,29445) (45539,39648) (85187,5693) (90880,20024) (110904,143229) (254133,8011) (262144,2048,zeros) (264192,10000)";
    for (const piece of [undefined, 1, 7, 1000, 1023, 1024, 4096, 65536]) {
      const got = chunkSpans(p, piece)
        .map((s) => `(${s.offset},${s.size}${s.zeros ? ",zeros" : ""})`)
        .join(" ");
      assert.equal(got, expected, `piece size ${piece}`);
    }
  });

  it("treats zero runs below 1024 bytes as data and at or above as holes", () => {
    const short = Buffer.concat([Buffer.from("abc"), Buffer.alloc(1023), Buffer.from("d")]);
    assert.deepEqual(
      chunkSpans(short).map((s) => s.zeros),
      [false],
    );
    const long = Buffer.concat([Buffer.from("abc"), Buffer.alloc(1024), Buffer.from("d")]);
    assert.deepEqual(
      chunkSpans(long, 100).map((s) => [s.offset, s.size, s.zeros]),
      [
        [0, 3, false],
        [3, 1024, true],
        [1027, 1, false],
      ],
    );
    assert.deepEqual(
      chunkSpans(Buffer.alloc(5000), 333).map((s) => [s.offset, s.size, s.zeros]),
      [[0, 5000, true]],
    );
  });
});

describe("Go JSON and times", () => {
  it("escapes like encoding/json and formats RFC 3339 nano times", () => {
    assert.equal(goString('a<b>&"\\\n\u0001é\u2028'), '"a\\u003cb\\u003e\\u0026\\"\\\\\\n\\u0001é\\u2028"');
    assert.equal(goTime({ sec: 0, nsec: 0 }), "1970-01-01T00:00:00Z");
    assert.equal(goTime({ sec: 1700000000, nsec: 120000000 }), "2023-11-14T22:13:20.12Z");
    assert.deepEqual(parseGoTime("2023-11-15T00:13:20.12+02:00", "t"), { sec: 1700000000, nsec: 120000000 });
  });
});

describe("footer and annotations", () => {
  it("round-trips the 64-byte footer and reads the 40-byte legacy one", () => {
    const frame = encodeFooterFrame({
      tocOffset: 100,
      tocLength: 20,
      tocUncompressedLength: 50,
      manifestType: 1,
      tarSplitOffset: 128,
      tarSplitLength: 30,
      tarSplitUncompressedLength: 90,
    });
    assert.equal(frame.length, 72);
    assert.equal(Buffer.from(frame.subarray(64)).toString("latin1"), "GNUlInUx");
    assert.deepEqual(decodeFooter(Buffer.concat([Buffer.alloc(10), frame])), {
      tocOffset: 100,
      tocLength: 20,
      tocUncompressedLength: 50,
      manifestType: 1,
      tarSplitOffset: 128,
      tarSplitLength: 30,
      tarSplitUncompressedLength: 90,
      footerSize: 64,
    });
    const legacy = Buffer.alloc(48);
    legacy.writeUInt32LE(0x184d2a50, 0);
    legacy.writeUInt32LE(40, 4);
    legacy.writeBigUInt64LE(7n, 8);
    legacy.writeBigUInt64LE(9n, 16);
    legacy.writeBigUInt64LE(11n, 24);
    legacy.writeBigUInt64LE(1n, 32);
    legacy.write("GnUlInUx", 40, "latin1");
    assert.equal(decodeFooter(legacy)?.footerSize, 40);
    assert.equal(decodeFooter(legacy)?.tocOffset, 7);
    const flipped = Buffer.from(frame);
    flipped[70] = (flipped[70] ?? 0) ^ 1;
    assert.equal(decodeFooter(flipped), undefined);
  });

  it("parses modern and legacy annotations and refuses eStargz mixes", () => {
    const values = {
      tocDigest: `sha256:${"a".repeat(64)}` as const,
      tocOffset: 85604264,
      tocLength: 836101,
      tocUncompressedLength: 4162774,
      tarSplitOffset: 86440373,
      tarSplitLength: 460663,
      tarSplitUncompressedLength: 11131307,
    };
    const ann = chunkedAnnotations(values, true);
    assert.equal(ann["io.github.containers.zstd-chunked.manifest-position"], "85604264:836101:4162774:1");
    assert.equal(ann["io.github.containers.zstd-chunked.tarsplit-position"], "86440373:460663:11131307");
    assert.equal(ann["io.containers.zstd-chunked.manifest-position"], "85604264:836101:4162774:1");
    const modern = parseChunkedAnnotations(ann);
    assert.equal(modern?.generation, "modern");
    assert.equal(modern?.tarSplit?.length, 460663);
    const legacyOnly = parseChunkedAnnotations({
      "io.containers.zstd-chunked.manifest-checksum": values.tocDigest,
      "io.containers.zstd-chunked.manifest-position": "1:2:3:1",
    });
    assert.equal(legacyOnly?.generation, "legacy");
    assert.equal(legacyOnly?.tarSplit, undefined);
    assert.equal(parseChunkedAnnotations({ other: "x" }), undefined);
    assert.throws(
      () => parseChunkedAnnotations({ ...ann, "containerd.io/snapshot/stargz/toc.digest": values.tocDigest }),
      /both zstd:chunked and eStargz/,
    );
    assert.throws(
      () =>
        parseChunkedAnnotations({ ...ann, "io.github.containers.zstd-chunked.manifest-position": "1:2:3:2" }),
      /manifest type 2/,
    );
  });
});

const D1 = `sha256:${"1".repeat(64)}` as const;
const D2 = `sha256:${"2".repeat(64)}` as const;

function sampleToc(): Toc {
  return {
    version: 1,
    entries: [
      { type: "dir", name: "a/", mode: 493, modtime: { sec: 1700000000, nsec: 0 } },
      {
        type: "reg",
        name: "a/small.txt",
        mode: 420,
        size: 13,
        uid: 1000,
        gid: 1000,
        modtime: { sec: 1700000000, nsec: 0 },
        xattrs: { "user.b": "AQI=", "user.a": "" },
        digest: D1,
        offset: 105,
        endOffset: 131,
      },
      {
        type: "reg",
        name: "a/holes.bin",
        size: 3000,
        modtime: { sec: 0, nsec: 0 },
        digest: D2,
        offset: 200,
        endOffset: 400,
        chunkSize: 1000,
        chunkDigest: D1,
      },
      {
        type: "chunk",
        name: "a/holes.bin",
        offset: 300,
        chunkSize: 1024,
        chunkOffset: 1000,
        chunkDigest: D2,
        chunkType: "zeros",
      },
      { type: "chunk", name: "a/holes.bin", offset: 310, chunkSize: 976, chunkOffset: 2024, chunkDigest: D1 },
      { type: "symlink", name: "a/link", linkName: "small.txt", modtime: { sec: 5, nsec: 1 } },
    ],
    tarSplitDigest: D2,
  };
}

describe("TOC", () => {
  it("serializes in Go field order with omissions and parses back", () => {
    const json = serializeToc(sampleToc());
    assert.match(
      json,
      /^\{"version":1,"entries":\[\{"type":"dir","name":"a\/","mode":493,"modtime":"2023-11-14T22:13:20Z"\},\{"type":"reg","name":"a\/small.txt","mode":420,"size":13,"uid":1000,"gid":1000,"modtime":"2023-11-14T22:13:20Z","xattrs":\{"user.a":"","user.b":"AQI="\},"digest":"sha256:1{64}","offset":105,"endOffset":131\}/,
    );
    assert.match(json, /"modtime":"1970-01-01T00:00:00Z"/);
    assert.ok(json.endsWith(`],"tarSplitDigest":"${D2}"}`));
    const back = parseToc(json, { dataEnd: 1000 });
    assert.equal(back.entries.length, 6);
    assert.equal(serializeToc(back), json);
  });

  it("reads a canonical TOC (native fast path) exactly as the strict parser reads it spaced out", () => {
    const json = serializeToc(sampleToc());
    const spaced = json.replaceAll(',"', ', "'); // whitespace: only the strict parser takes it
    assert.notEqual(spaced, json);
    assert.deepEqual(parseToc(json, { dataEnd: 1000 }), parseToc(spaced, { dataEnd: 1000 }));
  });

  it("matches field names case-insensitively and skips unknown fields", () => {
    const toc = parseToc(
      '{"Version":1,"ENTRIES":[{"Type":"reg","NAME":"x","Size":0,"future":{"a":[1]}}],"extra":true}\n',
    );
    assert.equal(toc.entries[0]?.name, "x");
    assert.equal(
      toc.entries[0]?.digest,
      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
  });

  it("refuses malformed TOCs with a named error", () => {
    const good = serializeToc(sampleToc());
    const bad: Array<[string, RegExp]> = [
      [`${good} x`, /unexpected data after the document/],
      [good.replace('"name":"a/link"', '"name":"a/small.txt"'), /duplicate entries/],
      [good.replace('"name":"a/link"', '"name":"./a/small.txt"'), /duplicate entries/],
      [
        good.replace('{"type":"dir","name":"a/",', '{"type":"dir","Type":"dir","name":"a/",'),
        /duplicate field/,
      ],
      [good.replace('"offset":105', '"offset":5000'), /past the data/],
      [good.replace('"type":"symlink"', '"type":"sparse"'), /unknown type/],
      [good.replace('"chunkOffset":2024', '"chunkOffset":2000'), /chunkOffset 2000, expected 2024/],
      [good.replace('"digest":"sha256:1111', '"digest":"md5:1111'), /not a sha256 digest/],
      // Canonical text that native JSON.parse would read without complaint: the fast path must not.
      [good.replace('"size":13', '"size":13,"size":14'), /duplicate key "size"/],
      [good.replace('"offset":105', '"offset":9007199254740993'), /number out of range/],
    ];
    for (const [text, re] of bad) {
      assert.throws(
        () => parseToc(text, { dataEnd: 1000 }),
        (err: unknown) => isRootstockError(err, "CHUNKED_FORMAT") && re.test((err as Error).message),
        String(re),
      );
    }
    const orphan: Toc = {
      version: 1,
      entries: [
        { type: "dir", name: "d" },
        { type: "chunk", name: "d", offset: 5, chunkSize: 1 },
      ],
    };
    assert.throws(() => parseToc(serializeToc(orphan)), /chunk type without a regular file/);
  });

  it("computes per-file frame ranges like mergeTocEntries", () => {
    const ranges = fileRanges(sampleToc(), 1000);
    assert.deepEqual(
      ranges.map((f) => [f.entry.name, f.ranges.map((r) => [r.start, r.end, r.size, r.fileOffset, r.zeros])]),
      [
        ["a/small.txt", [[105, 131, 13, 0, false]]],
        [
          "a/holes.bin",
          [
            [200, 300, 1000, 0, false],
            [300, 310, 1024, 1000, true],
            [310, 400, 976, 2024, false],
          ],
        ],
      ],
    );
  });
});

describe("zstdDecompress", () => {
  // Two frames, 3 MiB of output: more than one growth step when the size is not given.
  const first = Buffer.alloc(2 << 20, "a");
  const second = createHash("sha256").update("x").digest().toString("hex").repeat(32768);
  const frames = Buffer.concat([zstdCompress(first, 3), zstdCompress(Buffer.from(second), 3)]);
  const whole = Buffer.concat([first, Buffer.from(second)]);

  it("decodes every frame, with the exact size as its bound or none", () => {
    assert.deepEqual(Buffer.from(zstdDecompress(frames, "t")), whole);
    assert.deepEqual(Buffer.from(zstdDecompress(frames, "t", whole.length)), whole);
  });

  it("refuses output beyond its bound, truncated frames and garbage, with a typed error", () => {
    assert.throws(
      () => zstdDecompress(frames, "t", whole.length - 1),
      (e: unknown) => isRootstockError(e, "SIZE_MISMATCH") && /^t: decompresses to more than/.test(e.message),
    );
    assert.throws(
      () => zstdDecompress(frames.subarray(0, frames.length - 3), "t"),
      (e: unknown) => isRootstockError(e, "COMPRESSION") && /truncated/.test(String(e)),
    );
    assert.throws(
      () => zstdDecompress(Buffer.from("not zstd at all"), "t"),
      (e: unknown) => isRootstockError(e, "COMPRESSION"),
    );
  });

  it("decodes one frame that declares its size in one call, and still refuses what is wrong with it", () => {
    const one = zstdCompress(first, 3);
    assert.deepEqual(Buffer.from(zstdDecompress(one, "t")), first);
    assert.deepEqual(Buffer.from(zstdDecompress(one, "t", first.length)), first);
    assert.throws(
      () => zstdDecompress(one, "t", first.length - 1),
      (e: unknown) => isRootstockError(e, "SIZE_MISMATCH"),
    );
    assert.throws(
      () => zstdDecompress(one.subarray(0, one.length - 1), "t"),
      (e: unknown) => isRootstockError(e, "COMPRESSION") && /truncated/.test(String(e)),
    );
    assert.throws(
      () => zstdDecompress(Buffer.concat([one, Buffer.from("trailing garbage")]), "t"),
      (e: unknown) => isRootstockError(e, "COMPRESSION"),
    );
  });
});
