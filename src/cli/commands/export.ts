/** `rootstock export REF -o PATH --format ...`: an image as a directory, tarball or initrd. */
import { Option } from "commander";
import { RootstockError } from "../../errors.js";
import type { ExportFormat } from "../../export/export.js";
import { parseReference } from "../../oci/reference.js";
import { formatBytes } from "../progress.js";
import type { RegisterCommand } from "./index.js";

interface ExportFlags {
  format: ExportFormat;
  output?: string;
  overlay: string[];
  force?: boolean;
  copy?: boolean;
}

export const registerExport: RegisterCommand = (program, context) => {
  program
    .command("export")
    .description("export an image as a directory, a reproducible tarball or a cpio initrd")
    .argument("<ref>", "store:REPO[:TAG] | oci:PATH[:TAG] | docker://HOST/REPO[:TAG|@DIGEST]")
    .addOption(
      new Option("--format <format>", "output form")
        .choices(["dir", "tar", "tar.zst", "cpio", "cpio.zst"] satisfies ExportFormat[])
        .default("dir"),
    )
    .option("-o, --output <path>", "target directory or file; - for stdout (archive formats)")
    .option(
      "--overlay <src[:dest]>",
      "add a file, directory or tarball on top (repeatable, later wins)",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option("--force", "export into a non-empty directory, replace an existing file")
    .option("--copy", "dir: copy files (reflinks where possible) instead of hardlinking the store")
    .action(async (refText: string, flags: ExportFlags) => {
      const ctx = context();
      if (!flags.output) throw new RootstockError("INVALID_ARGUMENT", "export: name the output with -o PATH");
      const toStdout = flags.output === "-";
      if (toStdout && flags.format === "dir") {
        throw new RootstockError("INVALID_ARGUMENT", "export: --format dir needs a directory, not -o -");
      }
      if (toStdout && process.stdout.isTTY) {
        throw new RootstockError("INVALID_ARGUMENT", "export: refusing to write an archive to a terminal");
      }
      // Loaded here, not at startup: other commands never pay for the export modules.
      const [{ ContentStore }, { exportImage }, { parseOverlaySpec }, { openEndpoint }] = await Promise.all([
        import("../../cas/store.js"),
        import("../../export/export.js"),
        import("../../export/overlay.js"),
        import("../../image/endpoint.js"),
      ]);
      const overlays = flags.overlay.map(parseOverlaySpec);
      const source = await openEndpoint(parseReference(refText), ctx.endpoint);
      try {
        const store = await ContentStore.open(ctx.storeDir, { durability: "batch" });
        const r = await exportImage(source, store, {
          format: flags.format,
          output: toStdout ? process.stdout : flags.output,
          overlays,
          force: flags.force === true,
          copy: flags.copy === true,
          ...(ctx.platform ? { platform: ctx.platform } : {}),
          progress: ctx.progress,
        });
        ctx.progress.finish();
        const inv = r.inventory;
        const lines = [
          `exported   ${refText} (${r.image}) → ${r.output} [${r.format}]`,
          `tree       ${r.treeDigest}${r.overlays > 0 ? ` (with ${r.overlays} overlay${r.overlays > 1 ? "s" : ""})` : ""}`,
          `content    ${inv.files} files (${formatBytes(inv.contentBytes)}), ${inv.dirs} dirs, ${inv.symlinks} symlinks, ${inv.hardlinks} hard links, ${inv.devices} devices`,
        ];
        if (r.bytes !== undefined) lines.push(`size       ${formatBytes(r.bytes)}`);
        if (r.dir) {
          const d = r.dir;
          lines.push(
            `files      ${d.linked} hardlinked, ${d.copied} copied, ${d.written} written; farm: ${d.farm.reused} reused, ${d.farm.made} made`,
          );
          if (d.skipped.length > 0) {
            const byKind = new Map<string, number>();
            for (const s of d.skipped) byKind.set(s.what, (byKind.get(s.what) ?? 0) + 1);
            lines.push(
              `skipped    ${[...byKind].map(([k, n]) => `${n} ${k}${n > 1 ? "s" : ""}`).join(", ")} (not root):`,
              ...d.skipped.map((s) => `  ${s.path}: ${s.reason}`),
            );
          }
        }
        if (toStdout) process.stderr.write(`${lines.join("\n")}\n`);
        else ctx.print(lines.join("\n"), r);
      } finally {
        await source.close();
      }
    });
};
