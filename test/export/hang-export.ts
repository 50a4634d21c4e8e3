/**
 * Helper process for hostile.test.ts: starts an export to argv[2] whose second file
 * never finishes, prints "started" once that file is half written, and hangs until
 * the test kills it (an interrupted export, as a crash or SIGKILL leaves it).
 */
import { writeDirectory } from "../../src/export/safe-dir.js";

const t0 = { sec: 1_700_000_000, nsec: 0 };
await writeDirectory(
  process.argv[2]!,
  [
    {
      path: "done",
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: t0,
      size: 2,
      content: { kind: "bytes", data: Buffer.from("ok") },
    },
    {
      path: "hanging",
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: t0,
      size: 10,
      content: {
        kind: "stream",
        async *open() {
          yield Buffer.from("12345");
          process.stdout.write("started\n");
          await new Promise(() => setInterval(() => {}, 1000));
        },
      },
    },
  ],
  { durable: false },
);
