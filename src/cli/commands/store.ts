/** `rootstock store ls|gc|fsck|du`: look after the local content store. */
import type { Command } from "commander";
import type { ContentStore } from "../../cas/store.js";
import { RootstockError } from "../../errors.js";
import type { CommandContext } from "../context.js";
import { formatBytes } from "../progress.js";
import { table } from "../table.js";
import type { RegisterCommand } from "./index.js";

// The store's code loads when a store command runs, so other commands start faster.
async function openStore(ctx: CommandContext): Promise<ContentStore> {
  const { ContentStore } = await import("../../cas/store.js");
  return ContentStore.open(ctx.storeDir);
}

export const registerStore: RegisterCommand = (program: Command, context) => {
  const store = program.command("store").description("inspect and maintain the local content store");

  store
    .command("ls")
    .description("list the images (refs) in the store")
    .argument("[repository]", "only this repository")
    .action(async (repository: string | undefined) => {
      const ctx = context();
      const refs = await (await openStore(ctx)).listRefs(repository);
      ctx.print(
        refs.length === 0
          ? "(no images)"
          : table(
              ["REFERENCE", "DIGEST", "MEDIA TYPE", "SIZE"],
              refs.map((r) => [
                `store:${r.repository}:${r.tag}`,
                r.descriptor.digest.slice(0, 19),
                r.descriptor.mediaType.replace(/^application\//, ""),
                String(r.descriptor.size),
              ]),
            ),
        refs.map((r) => ({ reference: `store:${r.repository}:${r.tag}`, ...r })),
      );
    });

  store
    .command("gc")
    .description(
      "delete everything no ref reaches (blobs, file objects, metadata, stale ingest files) and farm objects no export links",
    )
    .option("-n, --dry-run", "report what would be deleted, delete nothing")
    .option(
      "--keep-pre-merge <age>",
      "first delete pre-merge tags (pre-…) set longer ago than this (e.g. 14d)",
    )
    .action(async (opts: { dryRun?: boolean; keepPreMerge?: string }) => {
      const ctx = context();
      if (opts.keepPreMerge !== undefined) {
        const { expirePreMerge, parseAge } = await import("../../build/channels.js");
        const expired = await expirePreMerge(await openStore(ctx), parseAge(opts.keepPreMerge), {
          dryRun: opts.dryRun === true,
        });
        for (const t of expired) {
          ctx.progress({
            type: "note",
            message: `${opts.dryRun ? "would untag" : "untagged"} ${t.repository}:${t.tag} (${(t.ageMs / 86_400_000).toFixed(1)} days old)`,
          });
        }
      }
      const [{ gc }, { pruneFarm }] = await Promise.all([
        import("../../cas/gc.js"),
        import("../../export/farm.js"),
      ]);
      const store = await openStore(ctx);
      const dryRun = opts.dryRun === true;
      const report = await gc(store, { dryRun, progress: ctx.progress });
      // The hardlink farm is a cache: objects no export links any more go too.
      const farm = await store.withExclusive(async () => pruneFarm(store.root, { dryRun }));
      ctx.progress.finish();
      const verb = report.dryRun ? "would free" : "freed";
      ctx.print(
        `${verb} ${formatBytes(report.bytesFreed + farm.bytes)}: ${report.blobs.count} blobs, ${report.files.count} file objects, ` +
          `${report.meta.count} metadata, ${report.ingest.count} ingest leftovers, ${farm.removed} farm objects; ` +
          `kept ${report.kept.blobs} blobs, ${report.kept.files} file objects, ${farm.kept} farm objects`,
        { ...report, farm },
      );
    });

  store
    .command("fsck")
    .description("re-verify every object and reference in the store")
    .option("--repair", "delete corrupt objects (re-fetch or re-import them afterwards)")
    .action(async (opts: { repair?: boolean }) => {
      const ctx = context();
      const { fsck } = await import("../../cas/fsck.js");
      const report = await fsck(await openStore(ctx), {
        repair: opts.repair === true,
        progress: ctx.progress,
      });
      ctx.progress.finish();
      const lines = [
        `checked ${report.checked.blobs} blobs, ${report.checked.files} file objects, ${report.checked.refs} refs, ${report.checked.meta} metadata`,
        ...report.problems.map((p) => `${p.kind}: ${p.object}: ${p.detail}${p.repaired ? " (removed)" : ""}`),
        ...(report.leftovers.length > 0
          ? [`${report.leftovers.length} ingest leftovers of interrupted writes (harmless; gc removes them)`]
          : []),
        report.clean ? "clean" : `${report.problems.length} problems`,
      ];
      ctx.print(lines.join("\n"), report);
      if (!report.clean) {
        throw new RootstockError(
          "STORE_CORRUPT",
          `store ${ctx.storeDir}: ${report.problems.length} problems found`,
        );
      }
    });

  store
    .command("du")
    .description("disk usage: blobs, file objects, metadata, the export farm")
    .action(async () => {
      const ctx = context();
      const opened = await openStore(ctx);
      const { du } = await import("../../cas/du.js");
      const { layerUsage } = await import("../../layers/usage.js");
      const { farmUsage } = await import("../../export/farm.js");
      const usage = await du(opened);
      const farm = farmUsage(opened.root);
      const layers = await layerUsage(opened);
      const row = (name: string, u: { count: number; bytes: number; storedBytes: number }) => [
        name,
        String(u.count),
        formatBytes(u.bytes),
        formatBytes(u.storedBytes),
      ];
      ctx.print(
        `${table(
          ["AREA", "OBJECTS", "LOGICAL", "ON DISK"],
          [
            row("blobs", usage.blobs),
            row("file objects", usage.files),
            row("metadata", usage.meta),
            row("ingest", usage.ingest),
            row("export farm", farm),
          ],
        )}\nrefs: ${usage.refs}` +
          (layers.layers > 0
            ? `\nlayers: ${layers.layers} recorded, ${layers.files} files, logical ${formatBytes(layers.logicalBytes)}, ` +
              `stored ${formatBytes(layers.uniqueBytes)} in ${layers.uniqueFiles} file objects (${formatBytes(layers.storedBytes)} on disk), ` +
              `dedup ${layers.dedupRatio.toFixed(2)}x`
            : "") +
          (farm.count > 0
            ? `\nexport farm: a copy of each exported file with the image's owner, mode and mtime, ` +
              `hardlinked by dir exports; ${farm.unlinked} objects (${formatBytes(farm.unlinkedBytes)}) ` +
              "no longer linked by any export (store gc removes them)"
            : ""),
        { ...usage, farm, layers },
      );
    });
};
