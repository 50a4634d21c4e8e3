/**
 * Draws core progress events: redrawn bars on a TTY, plain lines otherwise (and in
 * CI), nothing with --quiet. Writes to stderr so stdout stays parseable (--json).
 */
import type { ProgressEvent, ProgressSink } from "../progress.js";

interface Task {
  label: string;
  total?: number;
  current: number;
  unit: "bytes" | "files" | "items";
  lastPlainPercent: number;
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

function formatAmount(n: number, unit: Task["unit"]): string {
  return unit === "bytes" ? formatBytes(n) : `${n} ${unit}`;
}

export function createProgressRenderer(
  stream: NodeJS.WriteStream = process.stderr,
  mode: "auto" | "plain" | "quiet" = "auto",
): ProgressSink & { finish(): void } {
  const tasks = new Map<string, Task>();
  const tty = mode === "auto" && stream.isTTY === true;
  let drawnLines = 0;
  let lastDraw = 0;

  const clearDrawn = () => {
    if (drawnLines > 0) stream.write(`\x1b[${drawnLines}A\x1b[J`);
    drawnLines = 0;
  };

  const redraw = (force = false) => {
    const now = Date.now();
    if (!force && now - lastDraw < 100) return;
    lastDraw = now;
    const width = Math.max(20, Math.min(40, (stream.columns ?? 80) - 50));
    const lines = [...tasks.values()].map((t) => {
      const frac = t.total ? Math.min(1, t.current / t.total) : undefined;
      const bar =
        frac === undefined ? "".padEnd(width, "·") : "█".repeat(Math.round(frac * width)).padEnd(width, "░");
      const amount = t.total
        ? `${formatAmount(t.current, t.unit)} / ${formatAmount(t.total, t.unit)}`
        : formatAmount(t.current, t.unit);
      return `${t.label.slice(0, 28).padEnd(28)} ${bar} ${amount}`;
    });
    let out = drawnLines > 0 ? `\x1b[${drawnLines}A\x1b[J` : "";
    for (const line of lines) out += `${line}\n`;
    stream.write(out);
    drawnLines = lines.length;
  };

  const sink = (event: ProgressEvent) => {
    if (mode === "quiet") return;
    switch (event.type) {
      case "start":
        tasks.set(event.id, {
          label: event.label,
          total: event.total,
          current: 0,
          unit: event.unit ?? "items",
          lastPlainPercent: 0,
        });
        if (tty) redraw(true);
        else
          stream.write(
            `${event.label}: started${event.total ? ` (${formatAmount(event.total, event.unit ?? "items")})` : ""}\n`,
          );
        break;
      case "advance": {
        const t = tasks.get(event.id);
        if (!t) return;
        t.current = event.current;
        if (event.total !== undefined) t.total = event.total;
        if (tty) redraw();
        else if (t.total) {
          // Plain mode: a line per quarter, so CI logs show movement without flooding.
          const pct = Math.floor((t.current / t.total) * 4) * 25;
          if (pct > t.lastPlainPercent && pct < 100) {
            t.lastPlainPercent = pct;
            stream.write(`${t.label}: ${pct}%\n`);
          }
        }
        break;
      }
      case "done": {
        const t = tasks.get(event.id);
        tasks.delete(event.id);
        const line = `${t?.label ?? event.id}: done${event.summary ? `, ${event.summary}` : ""}\n`;
        if (tty) {
          clearDrawn();
          stream.write(line);
          redraw(true);
        } else {
          stream.write(line);
        }
        break;
      }
      case "note":
        if (tty) clearDrawn();
        stream.write(`${event.message}\n`);
        if (tty) redraw(true);
        break;
    }
  };
  return Object.assign(sink, {
    finish() {
      if (tty && tasks.size > 0) redraw(true);
      tasks.clear();
      drawnLines = 0;
    },
  });
}
