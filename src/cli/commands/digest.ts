/** `rootstock digest REF|DIR|TARBALL|CPIO`: the tree digest, equal for an image and each of its exports. */
import type { DigestResult } from "../../export/digest.js";
import { parseReference } from "../../oci/reference.js";
import type { RegisterCommand } from "./index.js";

export const registerDigest: RegisterCommand = (program, context) => {
  program
    .command("digest")
    .description("print the tree digest of an image, a directory, a tarball or a cpio archive")
    .argument("<target>", "store:REPO[:TAG] | oci:PATH[:TAG] | docker://... | DIR | TARBALL | CPIO")
    .action(async (target: string) => {
      const ctx = context();
      // Loaded here, not at startup: other commands never pay for these modules.
      const { digestImage, digestPath, looksLikeReference } = await import("../../export/digest.js");
      let result: DigestResult;
      if (looksLikeReference(target)) {
        const { openEndpoint } = await import("../../image/endpoint.js");
        const { ContentStore } = await import("../../cas/store.js");
        const source = await openEndpoint(parseReference(target), ctx.endpoint);
        try {
          const store = await ContentStore.open(ctx.storeDir);
          result = await digestImage(source, store, {
            ...(ctx.platform ? { platform: ctx.platform } : {}),
            progress: ctx.progress,
          });
        } finally {
          await source.close();
        }
      } else {
        result = await digestPath(target, { progress: ctx.progress });
      }
      ctx.progress.finish();
      ctx.print(result.treeDigest, result);
    });
};
