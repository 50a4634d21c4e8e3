/**
 * Progress is data: core modules emit events, and only the CLI decides how to draw
 * them (bars on a TTY, plain lines otherwise). A task is anything with an id that
 * starts, advances and ends; `total` may be unknown.
 */
export type ProgressEvent =
  | { type: "start"; id: string; label: string; total?: number; unit?: "bytes" | "files" | "items" }
  | { type: "advance"; id: string; current: number; total?: number }
  | { type: "done"; id: string; summary?: string }
  | { type: "note"; message: string };

export type ProgressSink = (event: ProgressEvent) => void;

export const silentProgress: ProgressSink = () => {};
