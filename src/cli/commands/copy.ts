/** `rootstock copy SRC DST` and `rootstock tags REPO`: moving images between endpoints. */
import type { Compression } from "../../compress/layer.js";
import { RootstockError } from "../../errors.js";
import { parseReference } from "../../oci/reference.js";
import { formatBytes } from "../progress.js";
import { compressionOption } from "./import.js";
import type { RegisterCommand } from "./index.js";

export const registerCopy: RegisterCommand = (program, context) => {
  program
    .command("copy")
    .description("copy an image between the store, OCI layouts and registries")
    .argument("<src>", "store:REPO[:TAG] | oci:PATH[:TAG] | docker://HOST/REPO[:TAG|@DIGEST]")
    .argument("<dst>", "store:REPO[:TAG] | oci:PATH[:TAG] | docker://HOST/REPO[:TAG]")
    .addOption(compressionOption())
    .option("--fast", "zstd:chunked at its fast level")
    .action(async (srcText: string, dstText: string, opts: { compression?: Compression; fast?: boolean }) => {
      const { copyImage } = await import("../../image/copy.js");
      const { openEndpoint } = await import("../../image/endpoint.js");
      const ctx = context();
      const srcRef = parseReference(srcText);
      const dstRef = parseReference(dstText);
      const srcTag = srcRef.transport === "docker" && srcRef.digest ? undefined : srcRef.tag;
      const tag = dstRef.tag ?? srcTag;
      if (dstRef.transport === "docker" && dstRef.digest) {
        throw new RootstockError("INVALID_ARGUMENT", `${dstText}: a destination names a tag, not a digest`);
      }
      const source = await openEndpoint(srcRef, ctx.endpoint);
      const destination = await openEndpoint(dstRef, { ...ctx.endpoint, create: true });
      try {
        const r = await copyImage(source, destination, tag, {
          ...(opts.compression ? { compression: opts.compression } : {}),
          ...(opts.fast ? { fast: true } : {}),
          ...(ctx.platform ? { platform: ctx.platform } : {}),
          progress: ctx.progress,
        });
        ctx.progress.finish();
        const count = (a: string) => r.blobs.filter((b) => b.action === a).length;
        ctx.print(
          `copied ${srcText} → ${dstText} (${r.digest})\n` +
            `sent ${formatBytes(r.bytesSent)} in ${count("uploaded") + count("re-encoded")} blobs` +
            `${count("re-encoded") > 0 ? ` (${count("re-encoded")} re-encoded)` : ""}, ` +
            `skipped ${formatBytes(r.bytesSkipped)} in ${count("exists")} already there, ` +
            `mounted ${formatBytes(r.bytesMounted)} in ${count("mounted")}`,
          r,
        );
      } finally {
        await source.close();
        await destination.close();
      }
    });

  program
    .command("tags")
    .description("list the tags of a repository")
    .argument("<repo>", "docker://HOST/REPO | oci:PATH | store:REPO")
    .action(async (repoText: string) => {
      const { registryClient } = await import("../../image/registry-endpoint.js");
      const ctx = context();
      const ref = parseReference(repoText);
      let tags: string[];
      if (ref.transport === "docker") {
        const client = registryClient(ref.registry, ctx.endpoint.registry);
        try {
          tags = await client.repository(ref.repository).listTags();
        } finally {
          await client.close();
        }
      } else if (ref.transport === "store") {
        const { ContentStore } = await import("../../cas/store.js");
        tags = (await (await ContentStore.open(ctx.storeDir)).listRefs(ref.repository)).map((r) => r.tag);
      } else {
        const { OciLayout } = await import("../../layout/layout.js");
        tags = await (await OciLayout.open(ref.path)).tags();
      }
      ctx.print(tags.join("\n"), tags);
    });
};
