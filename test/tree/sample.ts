/**
 * A small root filesystem with every kind of entry, made with the real tools as root:
 * files, directories, symlinks (dangling, to a directory), hard links across
 * directories, a char and a block device, a fifo, a socket, setuid/setgid/sticky
 * bits, foreign ownership, nanosecond mtimes, binary xattrs and security.capability,
 * and names that need quoting (newline, "=", backslash, non-ASCII, > 100 bytes).
 */
import { execFile } from "node:child_process";
import { chmod, chown, link, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

export const run = promisify(execFile);

export const ODD_NAME = "we ird=na\\me\nline ✓";
export const LONG_DIR = `deep/${"d".repeat(60)}/${"e".repeat(60)}`;

export async function makeSampleTree(root: string): Promise<void> {
  await mkdir(root, { recursive: true });
  const p = (rel: string) => join(root, rel);
  for (const d of ["bin", "etc", "dev", "tmp", "var/lib/empty", LONG_DIR, "srv/shared"]) {
    await mkdir(p(d), { recursive: true });
  }
  await writeFile(p("etc/hosts"), "127.0.0.1 localhost\n");
  await writeFile(p("etc/empty"), "");
  await writeFile(p("bin/ping"), Buffer.alloc(300_000, 7));
  await chmod(p("bin/ping"), 0o4755);
  await run("setcap", ["cap_net_raw+ep", p("bin/ping")]);
  await writeFile(p("bin/busybox"), "#!/bin/sh\necho busybox\n");
  await chmod(p("bin/busybox"), 0o755);
  await link(p("bin/busybox"), p("bin/ls"));
  await link(p("bin/busybox"), p("srv/shared/cat"));
  await symlink("busybox", p("bin/sh"));
  await symlink("/nonexistent/target", p("etc/dangling"));
  await symlink("../../bin", p("var/lib/bin-link")); // a symlink to a directory: never followed
  await chmod(p("tmp"), 0o1777);
  await chmod(p("srv/shared"), 0o2775);
  await writeFile(p("srv/owned"), "someone else's\n");
  await chown(p("srv/owned"), 1234, 5678);
  await run("mknod", [p("dev/null"), "c", "1", "3"]);
  await run("mknod", [p("dev/loop0"), "b", "7", "0"]);
  await run("mkfifo", [p("dev/initctl")]);
  await run("python3", [
    "-c",
    "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
    p("tmp/sock"),
  ]);
  await writeFile(p(ODD_NAME), "odd\n");
  await writeFile(p(`${LONG_DIR}/${"f".repeat(90)}.txt`), "long\n");
  await run("setfattr", ["-n", "user.binary", "-v", "0x00ff0a3d5c", p(ODD_NAME)]);
  await run("setfattr", ["-n", "user.empty", "-v", '""', p("etc/hosts")]);
  await run("setfattr", ["-n", "user.comment", "-v", "a directory", p("etc")]);
  await run("setfattr", ["-h", "-n", "trusted.on-symlink", "-v", "yes", p("bin/sh")]);
  // Every mtime fixed, so two samples made the same way are the same filesystem;
  // a few with nanoseconds (Node's utimes takes fractional seconds).
  await run("find", [root, "-exec", "touch", "-h", "-d", "2018-05-06 07:08:09", "{}", "+"]);
  await utimes(p("etc/hosts"), 1_600_000_000.5, 1_600_000_000.123456);
  await run("touch", ["-h", "-d", "2021-02-03 04:05:06.987654321", p("bin/sh")]);
  await run("touch", ["-d", "2019-01-01 00:00:00", p("etc"), p("bin"), p("dev"), p(LONG_DIR)]);
}
