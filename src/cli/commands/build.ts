/**
 * `rootstock build`, `plan`, `promote` and `ci gitlab`: the image graph commands.
 * The build module is loaded when a command runs, not when the CLI starts, so
 * other commands (and `plan`'s startup) do not pay for it.
 */
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { Option } from "commander";
import { RootstockError } from "../../errors.js";
import type { CommandContext } from "../context.js";
import type { RegisterCommand } from "./index.js";

interface GraphOptions {
  file?: string;
  image?: string[];
  arch?: string[];
  to?: string;
  channel?: "pre-merge" | "post-merge";
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/**
 * Positional arguments: an images.yaml path (ends in .yaml/.yml) and image names
 * (`test-gl`, or `test-gl@x86_64`); `--file`/`--image` say the same explicitly.
 */
async function loadSelection(args: string[], opts: GraphOptions) {
  const { loadGraph } = await import("../../build/graph.js");
  let file = opts.file;
  const names = [...(opts.image ?? [])];
  for (const arg of args) {
    if (/\.ya?ml$/.test(arg)) {
      if (file && file !== arg)
        throw new RootstockError("INVALID_ARGUMENT", `two images files: ${file} and ${arg}`);
      file = arg;
    } else names.push(arg);
  }
  file = resolve(file ?? "images.yaml");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new RootstockError("NOT_FOUND", `${file}: cannot read the images file`, { cause: err });
  }
  const graph = loadGraph(text, file);
  const arches = opts.arch ?? [];
  for (const arch of arches) {
    if (![...graph.images.values()].some((n) => n.arch.name === arch)) {
      throw new RootstockError("INVALID_ARGUMENT", `--arch ${arch}: no image of ${file} is built for it`);
    }
  }
  const archOk = (id: string) => arches.length === 0 || arches.includes(graph.images.get(id)!.arch.name);
  let select: string[] | undefined;
  if (names.length > 0) {
    select = [];
    for (const name of names) {
      const ids = graph.order.filter(
        (id) => (id === name || graph.images.get(id)!.name === name) && archOk(id),
      );
      if (ids.length === 0) {
        const known = [...new Set([...graph.images.values()].map((n) => n.name))].join(", ");
        throw new RootstockError(
          "INVALID_ARGUMENT",
          `unknown image ${name}${arches.length ? ` for ${arches.join(", ")}` : ""} (images: ${known})`,
        );
      }
      select.push(...ids);
    }
  } else if (arches.length > 0) select = graph.order.filter(archOk);
  return { graph, file, baseDir: dirname(file), select };
}

async function destinationOf(ctx: CommandContext, text: string | undefined) {
  const { parseDestination } = await import("../../build/destination.js");
  const to = text ?? process.env.ROOTSTOCK_DESTINATION ?? "store:";
  return parseDestination(to, ctx.endpoint);
}

async function channelOf(opts: GraphOptions) {
  const { defaultChannel } = await import("../../build/channels.js");
  return opts.channel ?? defaultChannel();
}

const channelOption = () =>
  new Option(
    "--channel <channel>",
    "pre-merge (tags pre-TAG) or post-merge (TAG); default: post-merge when CI_COMMIT_BRANCH == CI_DEFAULT_BRANCH",
  ).choices(["pre-merge", "post-merge"]);

const toOption = () =>
  new Option(
    "--to <dest>",
    "store:[PREFIX] | oci:DIR | docker://HOST/PATH (default store:, env ROOTSTOCK_DESTINATION)",
  );

export const registerBuild: RegisterCommand = (program, context) => {
  program
    .command("build")
    .description("build the images plan says are missing, in graph order, and push them")
    .argument("[images...]", "images.yaml and/or image names (NAME or NAME@ARCH); default: every image")
    .option("-f, --file <images.yaml>", "the images file (default ./images.yaml)")
    .option("--image <name>", "an image to build (repeatable)", collect)
    .option("--arch <arch>", "only these architectures (repeatable)", collect)
    .addOption(toOption())
    .addOption(channelOption())
    .option("--expect-tag <tag>", "fail unless the selected image still has this tag (CI jobs)")
    .option(
      "--source-date-epoch <seconds>",
      "clamp times to this (default env SOURCE_DATE_EPOCH, else 2024-01-01)",
    )
    .option("--deb-cache <dir>", "a .deb cache shared by builds (default STORE/cache/debs)")
    .option("--no-deb-cache", "download every package")
    .action(
      async (
        args: string[],
        opts: GraphOptions & { expectTag?: string; sourceDateEpoch?: string; debCache?: string | false },
      ) => {
        const ctx = context();
        const { graph, baseDir, select } = await loadSelection(args, opts);
        const { buildImages } = await import("../../build/run.js");
        const epochText = opts.sourceDateEpoch ?? process.env.SOURCE_DATE_EPOCH;
        if (epochText !== undefined && !/^\d+$/.test(epochText)) {
          throw new RootstockError(
            "INVALID_ARGUMENT",
            `--source-date-epoch ${JSON.stringify(epochText)}: expected seconds since 1970`,
          );
        }
        // SIGINT/SIGTERM stop the producers' process groups and let the work directory be
        // unmounted and removed before exiting
        const abort = new AbortController();
        const onSignal = (sig: string) =>
          abort.abort(new RootstockError("TOOL_FAILED", `build interrupted by ${sig}`));
        process.once("SIGINT", onSignal);
        process.once("SIGTERM", onSignal);
        const report = await buildImages({
          graph,
          baseDir,
          destination: await destinationOf(ctx, opts.to),
          channel: await channelOf(opts),
          ...(select ? { select } : {}),
          ...(opts.expectTag ? { expectTag: opts.expectTag } : {}),
          workRoot: resolve(ctx.storeDir, "work"),
          ...(opts.debCache === false
            ? {}
            : { debCache: resolve(opts.debCache ?? resolve(ctx.storeDir, "cache", "debs")) }),
          ...(epochText !== undefined ? { sourceDateEpoch: Number(epochText) } : {}),
          version: version(),
          progress: ctx.progress,
          signal: abort.signal,
        }).finally(() => {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        });
        ctx.progress.finish();
        const width = Math.max(...report.images.map((i) => i.id.length), 2);
        const lines = report.images.map((i) => {
          const what =
            i.action === "keep"
              ? "kept"
              : i.action === "promote"
                ? `promoted ${i.digest}`
                : `built ${i.digest} (${i.layer ? `layer ${i.layer.digest.slice(0, 19)} ${i.layer.size} bytes${i.layer.existed ? ", already stored" : ""}` : "no new layer"}; ${i.seconds?.toFixed(1)} s)`;
          return `${i.id.padEnd(width)}  ${i.repository}:${i.targetTag}  ${what}`;
        });
        const built = report.images.filter((i) => i.action === "build").length;
        lines.push(
          `${built} built, ${report.images.filter((i) => i.action === "promote").length} promoted, ${report.images.filter((i) => i.action === "keep").length} kept`,
        );
        ctx.print(lines.join("\n"), { channel: report.plan.channel, images: report.images });
      },
    );

  program
    .command("plan")
    .description("what build would do, and why (which inputs changed)")
    .argument("[images...]", "images.yaml and/or image names; default: every image")
    .option("-f, --file <images.yaml>", "the images file (default ./images.yaml)")
    .option("--image <name>", "only these images (repeatable)", collect)
    .option("--arch <arch>", "only these architectures (repeatable)", collect)
    .addOption(toOption())
    .addOption(channelOption())
    .action(async (args: string[], opts: GraphOptions) => {
      const ctx = context();
      const { graph, baseDir, select } = await loadSelection(args, opts);
      const { planBuild } = await import("../../build/destination.js");
      const { formatPlan } = await import("../../build/plan.js");
      const p = await planBuild(graph, baseDir, await destinationOf(ctx, opts.to), await channelOf(opts));
      const shown = select ? { ...p, images: p.images.filter((i) => select.includes(i.id)) } : p;
      ctx.print(formatPlan(shown), {
        channel: shown.channel,
        images: shown.images.map(({ record: _record, ...rest }) => rest),
        warnings: shown.warnings,
      });
    });

  program
    .command("promote")
    .description("make pre-merge images post-merge: the same manifest under TAG (no blob copied)")
    .argument("<images...>", "REPOSITORY:TAG (with or without pre-), relative to --to")
    .addOption(toOption())
    .option(
      "--from <src>",
      "where the pre-merge images are (default: --to); blobs are mounted across repositories",
    )
    .action(async (args: string[], opts: { to?: string; from?: string }) => {
      const ctx = context();
      const { promote } = await import("../../build/channels.js");
      const targets = args.map((arg) => {
        const colon = arg.lastIndexOf(":");
        if (colon <= 0)
          throw new RootstockError("INVALID_ARGUMENT", `promote ${arg}: expected REPOSITORY:TAG`);
        return { repository: arg.slice(0, colon), tag: arg.slice(colon + 1) };
      });
      const to = await destinationOf(ctx, opts.to);
      const results = await promote(targets, to, {
        ...(opts.from ? { from: await destinationOf(ctx, opts.from) } : {}),
        progress: ctx.progress,
      });
      ctx.progress.finish();
      ctx.print(
        results
          .map(
            (r) =>
              `promoted ${to.reference(r.repository, r.tag)} (${r.digest}): ${r.blobs.mounted} blobs mounted, ${r.blobs.uploaded} uploaded, ${r.blobs.exists} already there`,
          )
          .join("\n"),
        results,
      );
    });

  const ci = program.command("ci").description("CI pipeline generation");
  ci.command("gitlab")
    .description("a GitLab child pipeline that builds, promotes and exports what plan says")
    .argument("[images.yaml]", "the images file (default ./images.yaml)")
    .option("--to <registry>", "registry path images go to (default $CI_REGISTRY_IMAGE)")
    .addOption(channelOption())
    .option("-o, --output <file>", "write the pipeline here (default stdout)")
    .option("--job-image <image>", "container image the jobs run in")
    .option("--rootstock <command>", "how jobs run rootstock (default rootstock)")
    .option("--runner-tag <arch=tag>", "runner tag for an architecture's jobs (repeatable)", collect)
    .action(
      async (
        file: string | undefined,
        opts: GraphOptions & { output?: string; jobImage?: string; rootstock?: string; runnerTag?: string[] },
      ) => {
        const ctx = context();
        const { graph, baseDir } = await loadSelection(file ? [file] : [], { file: undefined });
        const { planBuild } = await import("../../build/destination.js");
        const { generateGitlabCi } = await import("../../build/ci-gitlab.js");
        const registry = opts.to ?? process.env.CI_REGISTRY_IMAGE;
        if (!registry)
          throw new RootstockError(
            "INVALID_ARGUMENT",
            "ci gitlab: --to or $CI_REGISTRY_IMAGE names the registry",
          );
        const p = await planBuild(graph, baseDir, await destinationOf(ctx, registry), await channelOf(opts));
        const runnerTags: Record<string, string[]> = {};
        for (const spec of opts.runnerTag ?? []) {
          const [arch, tag] = spec.split("=");
          if (!arch || !tag)
            throw new RootstockError("INVALID_ARGUMENT", `--runner-tag ${spec}: expected ARCH=TAG`);
          runnerTags[arch] = [...(runnerTags[arch] ?? []), tag];
        }
        const text = generateGitlabCi(graph, p, {
          imagesFile: file ?? "images.yaml",
          registry: opts.to ?? "$CI_REGISTRY_IMAGE",
          ...(opts.rootstock ? { rootstock: opts.rootstock } : {}),
          ...(opts.jobImage ? { jobImage: opts.jobImage } : {}),
          runnerTags,
        });
        if (opts.output) await writeFile(opts.output, text);
        else process.stdout.write(text);
      },
    );
};
