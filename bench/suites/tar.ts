/**
 * tar: parse + byte-exact re-emit of the reference root filesystem tarball (~420 MB,
 * mmdebstrap) next to GNU tar creating the same tree. Every operation writes a real
 * file on the same disk (GNU tar skips reading file data when writing to /dev/null,
 * so `tar -cf /dev/null` would not be a fair baseline) or pipes into `cat >/dev/null`.
 * Each row is the fastest of three runs (2 shared cores make single runs noisy);
 * peak RSS is the largest seen; the note adds the lowest user+sys CPU time.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { debianRootfsDir, debianRootfsTar } from "../../test/helpers/fixtures.js";
import { formatTable, type Measurement, measure, ourOp } from "../lib.js";

const RUNS = 3;

const quote = (word: string) => `'${word.replace(/'/g, "'\\''")}'`;

/** One shell command line for argv (kept as is when it already is a command line). */
function commandLine(argv: string[] | string): string {
  return typeof argv === "string" ? argv : argv.map(quote).join(" ");
}

/**
 * Fastest of RUNS runs. The command also runs under an inner GNU time that records
 * user+sys CPU seconds: on a shared, loaded machine CPU time is the steadier number.
 */
async function best(
  label: string,
  argv: string[] | string,
  note: string,
  work: string,
): Promise<Measurement> {
  const cpuFile = join(work, "cpu");
  const runs: Array<Measurement & { stdout: string; cpu: number }> = [];
  for (let i = 0; i < RUNS; i++) {
    const m = await measure(
      label,
      `/usr/bin/time -f '%U %S' -o ${cpuFile} sh -c ${quote(commandLine(argv))}`,
    );
    const [user, sys] = (await readFile(cpuFile, "utf8")).trim().split(/\s+/).slice(-2).map(Number);
    runs.push({ ...m, cpu: (user ?? 0) + (sys ?? 0) });
  }
  const fastest = runs.reduce((a, b) => (b.wallSeconds < a.wallSeconds ? b : a));
  const bytes = Number(fastest.stdout.trim());
  return {
    label,
    wallSeconds: fastest.wallSeconds,
    peakRssMB: Math.max(...runs.map((r) => r.peakRssMB)),
    bytes: Number.isFinite(bytes) && bytes > 0 ? bytes : undefined,
    note: `${note}; CPU ${Math.min(...runs.map((r) => r.cpu)).toFixed(2)} s`,
  };
}

export async function run(): Promise<string> {
  const tarball = await debianRootfsTar("reference");
  const tree = await debianRootfsDir("reference");
  const work = await mkdtemp(join(tmpdir(), "rootstock-bench-tar-"));
  try {
    const out = join(work, "out.tar");
    const rows: Measurement[] = [
      await best(
        "tar -c tree > file",
        `tar -cf ${out} -C ${tree} . && stat -c %s ${out}`,
        "GNU tar 1.34, baseline",
        work,
      ),
      await best(
        "tar -c tree piped to cat >/dev/null",
        `tar -c -C ${tree} . | cat >/dev/null`,
        "GNU tar through a pipe",
        work,
      ),
      await best("cat tarball > file", `cat ${tarball} > ${out} && stat -c %s ${out}`, "I/O floor", work),
      await best(
        "rootstock parse + re-emit > file",
        ourOp("tar-reemit", tarball, out),
        "byte-exact, no fsync",
        work,
      ),
      await best(
        "rootstock parse + re-emit > /dev/null",
        ourOp("tar-reemit", tarball, "/dev/null"),
        "byte-exact",
        work,
      ),
    ];
    return formatTable("tar: reference rootfs (~420 MB, 9110 entries)", rows, "tar -c tree > file");
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
