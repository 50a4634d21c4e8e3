/** `rootstock pull SRC [DEST]`: an image into the store, fetching only the files it lacks. */
import { RootstockError } from "../../errors.js";
import { parseReference } from "../../oci/reference.js";
import { formatBytes } from "../progress.js";
import type { RegisterCommand } from "./index.js";

export const registerPull: RegisterCommand = (program, context) => {
  program
    .command("pull")
    .description("pull an image into the store: only files the store lacks are fetched (zstd:chunked)")
    .argument("<src>", "docker://HOST/REPO[:TAG|@DIGEST] | oci:PATH[:TAG]")
    .argument("[dest]", "store:REPO[:TAG] (default: the source's registry/repository:tag)")
    .action(async (srcText: string, destText: string | undefined) => {
      const { ContentStore } = await import("../../cas/store.js");
      const { defaultDestination } = await import("../../pull/destination.js");
      const { pullImage } = await import("../../pull/pull.js");
      const { openPullSource } = await import("../../pull/source.js");
      const ctx = context();
      const ref = parseReference(srcText);
      let destination = defaultDestination(ref);
      if (destText !== undefined) {
        const d = parseReference(destText);
        if (d.transport !== "store")
          throw new RootstockError(
            "INVALID_ARGUMENT",
            `${destText}: pull writes into the store (store:REPO[:TAG])`,
          );
        destination = { repository: d.repository, tag: d.tag };
      }
      const store = await ContentStore.open(ctx.storeDir, { durability: "batch" });
      const source = await openPullSource(ref, {
        ...(ctx.endpoint.registry ? { registry: ctx.endpoint.registry } : {}),
      });
      try {
        const r = await pullImage(source, store, {
          destination,
          ...(ctx.platform ? { platform: ctx.platform } : {}),
          progress: ctx.progress,
        });
        ctx.progress.finish();
        const count = (a: string) => r.layers.filter((l) => l.action === a).length;
        const fetchedBytes = r.layers.reduce((n, l) => n + l.bytesFetchedUncompressed, 0);
        const reusedBytes = r.layers.reduce((n, l) => n + l.bytesReused, 0);
        ctx.print(
          [
            `pulled ${srcText} → store:${destination.repository}:${destination.tag} (${r.digest})`,
            `layers: ${r.layers.length} (${r.layersSkipped} already in the store, ${count("partial")} partial, ${count("full") + count("local")} read in full)`,
            `files: fetched ${r.filesFetched} (${formatBytes(fetchedBytes)}), reused ${r.filesReused} (${formatBytes(reusedBytes)})`,
            `read ${formatBytes(r.bytesRead)} from the source`,
          ].join("\n"),
          r,
        );
      } finally {
        await source.close();
      }
    });
};
