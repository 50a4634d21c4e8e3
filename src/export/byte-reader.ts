/**
 * Pulls exact byte counts out of a chunked stream without ever holding more than one
 * source chunk plus the bytes asked for: what an archive reader needs to parse
 * headers and pass bodies through.
 */
export class ByteReader {
  private readonly source: AsyncIterator<Uint8Array>;
  private chunk: Uint8Array = new Uint8Array(0);
  private offset = 0;
  private ended = false;
  /** Bytes consumed so far. */
  position = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.offset >= this.chunk.length) {
      if (this.ended) return false;
      const next = await this.source.next();
      if (next.done) {
        this.ended = true;
        return false;
      }
      this.chunk = next.value;
      this.offset = 0;
    }
    return true;
  }

  /** Exactly `n` bytes, or fewer when the stream ends first (the caller decides if that is an error). */
  async read(n: number): Promise<Uint8Array> {
    if (!(await this.fill())) return new Uint8Array(0);
    if (this.chunk.length - this.offset >= n) {
      const out = this.chunk.subarray(this.offset, this.offset + n);
      this.offset += n;
      this.position += n;
      return out;
    }
    const out = new Uint8Array(n);
    let have = 0;
    while (have < n && (await this.fill())) {
      const take = Math.min(n - have, this.chunk.length - this.offset);
      out.set(this.chunk.subarray(this.offset, this.offset + take), have);
      this.offset += take;
      have += take;
    }
    this.position += have;
    return have === n ? out : out.subarray(0, have);
  }

  /** Up to `n` bytes as source-sized slices; stops early if the stream ends (check the count). */
  async *take(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0 && (await this.fill())) {
      const take = Math.min(left, this.chunk.length - this.offset);
      const out = this.chunk.subarray(this.offset, this.offset + take);
      this.offset += take;
      this.position += take;
      left -= take;
      yield out;
    }
  }

  /** Whether any byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /** Stops reading: the source is told to finish (a file source closes its descriptor). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.source.return?.();
  }
}
