/** `rootstock inspect REF`: what an image is: manifest, config, layers. */
import { type Endpoint, openEndpoint } from "../../image/endpoint.js";
import { readImage } from "../../layout/image.js";
import { layerCompression } from "../../oci/mediatypes.js";
import { parseReference } from "../../oci/reference.js";
import { formatBytes } from "../progress.js";
import { table } from "../table.js";
import type { RegisterCommand } from "./index.js";

const CHUNKED_KEY = "io.github.containers.zstd-chunked.manifest-checksum";
const LEGACY_CHUNKED_KEY = "io.containers.zstd-chunked.manifest-checksum";

function layerFormat(mediaType: string, annotations: Record<string, string> | undefined): string {
  const compression = layerCompression(mediaType) ?? mediaType;
  if (annotations?.[CHUNKED_KEY]) return "zstd:chunked";
  if (annotations?.[LEGACY_CHUNKED_KEY]) return "zstd:chunked (legacy)";
  return compression === "none" ? "tar" : compression;
}

export const registerInspect: RegisterCommand = (program, context) => {
  program
    .command("inspect")
    .description("show an image's manifest, config and layers")
    .argument("<ref>", "store:REPO[:TAG] | oci:PATH[:TAG] | docker://HOST/REPO[:TAG|@DIGEST]")
    .option("--raw", "print the manifest as stored")
    .action(async (refText: string, opts: { raw?: boolean }) => {
      const ctx = context();
      const endpoint: Endpoint = await openEndpoint(parseReference(refText), ctx.endpoint);
      try {
        const root = await endpoint.resolveRoot();
        if (opts.raw) {
          process.stdout.write(Buffer.from(await endpoint.read(root)));
          process.stdout.write("\n");
          return;
        }
        const image = await readImage(endpoint, root, ctx.platform);
        const { manifest, config } = image;
        const layers = manifest.layers.map((l, i) => ({
          digest: l.digest,
          diffId: config.rootfs.diff_ids[i],
          size: l.size,
          mediaType: l.mediaType,
          format: layerFormat(l.mediaType, l.annotations),
          annotations: l.annotations ?? {},
        }));
        const data = {
          reference: refText,
          digest: image.descriptor.digest,
          mediaType: image.descriptor.mediaType,
          platform: [config.os, config.architecture, config.variant].filter(Boolean).join("/"),
          created: config.created,
          config: config.config ?? {},
          labels: config.config?.Labels ?? {},
          layers,
          size: layers.reduce((n, l) => n + l.size, 0),
        };
        const labels = Object.entries(data.labels);
        ctx.print(
          [
            `reference  ${refText}`,
            `digest     ${data.digest}`,
            `platform   ${data.platform}`,
            ...(data.created ? [`created    ${data.created}`] : []),
            `size       ${formatBytes(data.size)} in ${layers.length} layer${layers.length === 1 ? "" : "s"}`,
            ...(labels.length > 0 ? ["labels", ...labels.map(([k, v]) => `  ${k}=${v}`)] : []),
            "",
            table(
              ["LAYER", "FORMAT", "SIZE", "DIFF ID"],
              layers.map((l) => [
                l.digest.slice(0, 19),
                l.format,
                formatBytes(l.size),
                (l.diffId ?? "").slice(0, 19),
              ]),
            ),
          ].join("\n"),
          data,
        );
      } finally {
        await endpoint.close();
      }
    });
};
