/**
 * Benchmark plumbing: every measured operation, ours or a peer tool's, runs as its
 * own process under GNU time, so wall time and peak RSS are measured the same way
 * for both. Results are printed side by side as a table by bench/run.ts.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface Measurement {
  label: string;
  wallSeconds: number;
  peakRssMB: number;
  /** Output size or bytes moved, when the operation has one. */
  bytes?: number;
  note?: string;
}

/** Runs `argv` (through `sh -c` when `shell`) under /usr/bin/time and returns wall time and peak RSS. */
export async function measure(
  label: string,
  argv: string[] | string,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Measurement & { stdout: string }> {
  // Untimed: flush the page cache's dirty data first, or an operation that writes
  // pays for the writeback of whatever the previous one wrote (the kernel throttles
  // writers above the dirty limit): every row, ours and the peers', starts clean.
  await new Promise((resolve) => spawn("sync", { stdio: "ignore" }).on("close", resolve));
  const dir = await mkdtemp(join(tmpdir(), "rootstock-bench-"));
  const timeFile = join(dir, "time");
  const cmd = typeof argv === "string" ? ["sh", "-c", argv] : argv;
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      const child = spawn("/usr/bin/time", ["-f", "%e %M", "-o", timeFile, ...cmd], {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      child.stderr.on("data", (d) => {
        err += d;
      });
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) resolve(out);
        else reject(new Error(`${label}: exit ${code}: ${err.trim().split("\n").slice(-5).join("\n")}`));
      });
    });
    const [wall, rssKB] = (await readFile(timeFile, "utf8")).trim().split(/\s+/).slice(-2).map(Number);
    return { label, wallSeconds: wall ?? Number.NaN, peakRssMB: (rssKB ?? 0) / 1024, stdout };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * argv that runs one of our own operations in a fresh process: bench/ops/NAME.ts is a
 * small script that does one thing with its arguments (and prints a byte count, if any).
 */
export function ourOp(name: string, ...args: string[]): string[] {
  // Compiled by bench/run.ts (tsconfig.bench.json).
  const script = fileURLToPath(new URL(`../.cache/bench-build/bench/ops/${name}.js`, import.meta.url));
  return [process.execPath, script, ...args];
}

/**
 * argv that runs the rootstock CLI as users do: bin/rootstock.js, which runs the
 * compiled dist/ (bench/run.ts builds it first) rather than the sources through tsx.
 */
export function ourCli(...args: string[]): string[] {
  return [process.execPath, fileURLToPath(new URL("../bin/rootstock.js", import.meta.url)), ...args];
}

export function formatTable(title: string, rows: Measurement[], baseline?: string): string {
  const base = rows.find((r) => r.label === baseline);
  const header = ["operation", "wall s", base ? `x ${baseline}` : "", "peak RSS MB", "bytes", "note"];
  const lines = rows.map((r) => [
    r.label,
    r.wallSeconds.toFixed(2),
    base ? (r.wallSeconds / base.wallSeconds).toFixed(2) : "",
    r.peakRssMB.toFixed(0),
    r.bytes === undefined ? "" : r.bytes.toLocaleString("en-US"),
    r.note ?? "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [
    `\n## ${title}\n`,
    fmt(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...lines.map(fmt),
  ].join("\n");
}

/** One operation measured in rounds: `run(round)` measures it once (its own outputs per round). */
export interface RoundRow {
  label: string;
  run: (round: number) => Promise<Measurement>;
}

/**
 * Measures `rows` in `rounds` alternating rounds (A B C, A B C, ...) and gives each row
 * its median wall time, its highest peak RSS and the spread in the note. On this VM one
 * run depends on the memory the previous one left behind (a write into pages the host
 * has not backed yet costs several times one into pages just freed), so a single run
 * of each, in a fixed order, favours whichever row follows the one that freed memory.
 */
export async function measureRounds(rows: RoundRow[], rounds = 3): Promise<Measurement[]> {
  const runs = rows.map(() => [] as Measurement[]);
  for (let round = 0; round < rounds; round++) {
    for (const [i, row] of rows.entries()) runs[i]!.push(await row.run(round));
  }
  return rows.map((row, i) => {
    const all = runs[i]!;
    const walls = all.map((m) => m.wallSeconds).sort((a, b) => a - b);
    const median = walls[Math.floor(walls.length / 2)]!;
    const spread = `median of ${walls.length} (${walls[0]!.toFixed(2)}–${walls.at(-1)!.toFixed(2)} s)`;
    const first = all[0]!;
    return {
      ...first,
      label: row.label,
      wallSeconds: median,
      peakRssMB: Math.max(...all.map((m) => m.peakRssMB)),
      note: first.note ? `${first.note}; ${spread}` : spread,
    };
  });
}
