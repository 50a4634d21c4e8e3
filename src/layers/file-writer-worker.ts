/**
 * Worker thread body of the file-object writer (file-writer.ts): hashes file
 * contents (sha256, and the CRC-64 tar-split keeps), and writes them as file objects
 * in blocking calls, so the thread that parses the tar only copies bytes.
 * A file may arrive in several parts (large files): the worker keeps its open
 * ingest file between batches.
 */
import { createHash, type Hash } from "node:crypto";
import { closeSync, fsyncSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { parentPort } from "node:worker_threads";
import {
  commitIngestSync,
  ingestBytesSync,
  openIngestSync,
  statOrUndefined,
  writeAllSync,
} from "../cas/atomic.js";
import { Crc64 } from "../compress/crc64.js";
import { type Digest, digestHex } from "../oci/digest.js";
import type { WriterReply, WriterRequest, WriterResult } from "./file-writer.js";

interface OpenFile {
  fd: number;
  tmp: string;
  hash: Hash;
  crc: Crc64;
  size: number;
}

const open = new Map<number, OpenFile>();
let config: WriterRequest["config"] | undefined;

function pathFor(digest: Digest): string {
  const hex = digestHex(digest);
  return join(config!.filesRoot, "sha256", hex.slice(0, 2), hex.slice(2));
}

function drop(file: OpenFile): void {
  try {
    closeSync(file.fd);
  } catch {}
  try {
    unlinkSync(file.tmp);
  } catch {}
}

function part(fileId: number, data: Uint8Array, first: boolean, final: boolean): WriterResult | undefined {
  const cfg = config!;
  if (first && final) {
    const crc = new Crc64().update(data).digest();
    const r = ingestBytesSync(data, {
      ingestDir: cfg.ingestDir,
      pathFor,
      what: "file object",
      durable: cfg.durable,
    });
    return { fileId, digest: r.digest, size: r.size, existed: r.existed, crc };
  }
  let file = open.get(fileId);
  if (first) {
    const { fd, tmp } = openIngestSync(cfg.ingestDir);
    file = { fd, tmp, hash: createHash("sha256"), crc: new Crc64(), size: 0 };
    open.set(fileId, file);
  }
  if (!file) throw new Error(`file ${fileId}: part without a first part`);
  file.hash.update(data);
  file.crc.update(data);
  file.size += data.length;
  writeAllSync(file.fd, data);
  if (!final) return undefined;
  open.delete(fileId);
  const digest = `sha256:${file.hash.digest("hex")}` as Digest;
  const target = pathFor(digest);
  let existed: boolean;
  if (statOrUndefined(target)?.size === file.size) {
    drop(file);
    existed = true;
  } else {
    try {
      if (cfg.durable) fsyncSync(file.fd);
    } finally {
      closeSync(file.fd);
    }
    existed = commitIngestSync(file.tmp, target, file.size, cfg.durable);
  }
  return { fileId, digest, size: file.size, existed, crc: file.crc.digest() };
}

parentPort!.on("message", (req: WriterRequest) => {
  if (req.config) config = req.config;
  const results: WriterResult[] = [];
  let error: WriterReply["error"];
  try {
    const bytes = new Uint8Array(req.buffer, 0, req.length);
    for (const job of req.jobs) {
      const r = part(job.fileId, bytes.subarray(job.offset, job.offset + job.length), job.first, job.final);
      if (r) results.push(r);
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    error = { message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}) };
    for (const f of open.values()) drop(f);
    open.clear();
  }
  const reply: WriterReply = {
    batchId: req.batchId,
    results,
    buffer: req.buffer,
    ...(error ? { error } : {}),
  };
  parentPort!.postMessage(reply, [req.buffer]);
});
