/** `rootstock inspect REF`: what an image is: manifest, config, layers. */
import type { Toc } from "../../compress/toc.js";
import { RootstockError } from "../../errors.js";
import type { Endpoint } from "../../image/endpoint.js";
import { layerCompression } from "../../oci/mediatypes.js";
import { parseReference } from "../../oci/reference.js";
import type { Descriptor } from "../../oci/types.js";
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

/** The verified TOC of a zstd:chunked layer (older generations: located by the footer, listing only). */
async function readLayerToc(endpoint: Endpoint, layer: Descriptor): Promise<Toc> {
  const { readChunkedMetadata } = await import("../../compress/chunked-reader.js");
  const meta = await readChunkedMetadata(
    (start, end) => endpoint.readRange(layer.digest, start, end),
    layer,
    {
      allowFooter: true,
    },
  );
  if (!meta)
    throw new RootstockError("NOT_FOUND", `layer ${layer.digest} has no zstd:chunked table of contents`);
  return meta.toc;
}

export const registerInspect: RegisterCommand = (program, context) => {
  program
    .command("inspect")
    .description("show an image's manifest, config and layers")
    .argument("<ref>", "store:REPO[:TAG] | oci:PATH[:TAG] | docker://HOST/REPO[:TAG|@DIGEST]")
    .option("--raw", "print the manifest as stored")
    .option(
      "--toc [layer]",
      "list a zstd:chunked layer's table of contents (layer index or digest; default the last)",
    )
    .action(async (refText: string, opts: { raw?: boolean; toc?: string | boolean }) => {
      const { openEndpoint } = await import("../../image/endpoint.js");
      const { readImage } = await import("../../layout/image.js");
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
        if (opts.toc !== undefined) {
          const which = typeof opts.toc === "string" ? opts.toc : String(manifest.layers.length - 1);
          const layer = /^\d+$/.test(which)
            ? manifest.layers[Number(which)]
            : manifest.layers.find((l) => l.digest === which || l.digest.startsWith(`sha256:${which}`));
          if (!layer) throw new RootstockError("NOT_FOUND", `${refText}: no layer ${which}`);
          const toc = await readLayerToc(endpoint, layer);
          const rows = toc.entries.filter((e) => e.type !== "chunk");
          ctx.print(
            table(
              ["TYPE", "MODE", "UID:GID", "SIZE", "CHUNKS", "DIGEST", "NAME"],
              rows.map((e) => [
                e.type,
                (e.mode ?? 0).toString(8).padStart(4, "0"),
                `${e.uid ?? 0}:${e.gid ?? 0}`,
                String(e.size ?? 0),
                String(1 + toc.entries.filter((c) => c.type === "chunk" && c.name === e.name).length),
                e.digest ? e.digest.slice(7, 19) : "",
                e.linkName ? `${e.name} -> ${e.linkName}` : e.name,
              ]),
            ),
            toc,
          );
          return;
        }
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
