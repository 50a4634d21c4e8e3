/** argv: SRC_LAYOUT TAG DST_LAYOUT [link] — copies one image between OCI layouts, verified; prints bytes copied. */
import { copyGraph } from "../../src/layout/image.js";
import { OciLayout } from "../../src/layout/layout.js";

const [src, tag, dst, mode] = process.argv.slice(2);
const source = await OciLayout.open(src!);
const sink = await OciLayout.open(dst!, { create: true });
const desc = await source.resolve(tag);
const report = await copyGraph(source, sink, desc, { link: mode === "link" });
await sink.setTag(tag!, desc);
console.log(report.bytes);
