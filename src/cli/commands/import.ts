/** `rootstock import TARBALL DEST`: a root filesystem tarball becomes a one-layer image. */
import { Option } from "commander";
import type { Compression } from "../../compress/layer.js";
import { RootstockError } from "../../errors.js";
import { parseReference } from "../../oci/reference.js";
import { formatBytes } from "../progress.js";
import type { RegisterCommand } from "./index.js";

export const COMPRESSIONS: Compression[] = ["zstd:chunked", "zstd", "gzip", "none"];

export const compressionOption = () =>
  new Option("--compression <format>", "layer compression").choices(COMPRESSIONS);

export const registerImport: RegisterCommand = (program, context) => {
  program
    .command("import")
    .description("import a root filesystem tarball as a one-layer image")
    .argument("<tarball>", "an uncompressed tar of a root filesystem")
    .argument("<dest>", "store:REPO[:TAG] | oci:PATH:TAG | docker://HOST/REPO:TAG")
    .addOption(compressionOption().default("zstd:chunked"))
    .option("--fast", "zstd:chunked at its fast level (same chunks, bigger frames)")
    .action(async (tarball: string, destText: string, opts: { compression: Compression; fast?: boolean }) => {
      const { openEndpoint } = await import("../../image/endpoint.js");
      const { importTarball } = await import("../../image/import.js");
      const ctx = context();
      const ref = parseReference(destText);
      const tag = ref.tag;
      if (!tag) throw new RootstockError("INVALID_ARGUMENT", `${destText}: name a tag to import into`);
      const dest = await openEndpoint(ref, { ...ctx.endpoint, create: true });
      try {
        const s = await importTarball(tarball, dest, tag, {
          compression: opts.compression,
          ...(opts.fast ? { fast: true } : {}),
          ...(ctx.platform ? { platform: ctx.platform } : {}),
          progress: ctx.progress,
        });
        ctx.progress.finish();
        const inv = s.inventory;
        ctx.print(
          [
            `imported   ${destText}`,
            `digest     ${s.digest}`,
            `tree       ${s.treeDigest}`,
            `layer      ${s.layer.digest} (${s.layer.mediaType.replace(/^application\/vnd\.oci\.image\.layer\.v1\./, "")}${opts.compression === "zstd:chunked" ? ", zstd:chunked" : ""})`,
            `size       ${formatBytes(s.layer.uncompressedSize)} tar → ${formatBytes(s.layer.size)} (${((100 * s.layer.size) / Math.max(1, s.layer.uncompressedSize)).toFixed(1)}%)${s.layerExisted ? ", already stored" : ""}`,
            `content    ${inv.files} files (${formatBytes(inv.contentBytes)}, ${inv.uniqueContents} distinct), ${inv.dirs} dirs, ${inv.symlinks} symlinks, ${inv.hardlinks} hard links, ${inv.devices} devices, ${inv.fifos} fifos`,
          ].join("\n"),
          s,
        );
      } finally {
        await dest.close();
      }
    });
};
