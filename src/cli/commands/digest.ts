/** `rootstock digest REF|DIR|TARBALL|CPIO`: the tree digest, equal for an image and each of its exports. */
import { ContentStore } from "../../cas/store.js";
import { digestImage, digestPath, looksLikeReference } from "../../export/digest.js";
import { openEndpoint } from "../../image/endpoint.js";
import { parseReference } from "../../oci/reference.js";
import type { RegisterCommand } from "./index.js";

export const registerDigest: RegisterCommand = (program, context) => {
  program
    .command("digest")
    .description("print the tree digest of an image, a directory, a tarball or a cpio archive")
    .argument("<target>", "store:REPO[:TAG] | oci:PATH[:TAG] | docker://... | DIR | TARBALL | CPIO")
    .action(async (target: string) => {
      const ctx = context();
      let result: Awaited<ReturnType<typeof digestPath>>;
      if (looksLikeReference(target)) {
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
