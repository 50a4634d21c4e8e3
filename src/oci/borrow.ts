/**
 * Borrowed chunks, a contract between a blob stream and its consumer. A producer
 * that reads into one reused buffer (the plain-http registry client, a store read) can yield
 * views that stay valid only until the consumer's next `next()`, which saves a fresh
 * buffer per chunk. It does so only after the consumer said it copies or finishes
 * with every chunk before asking for the next one; otherwise chunks are the
 * consumer's to keep. A wrapper hides the offer, so the default stays: owned chunks.
 */
const BORROW = Symbol("rootstock.borrow");

/** Producer side: `stream` will lend its chunks once `accept` is called (before the first `next()`). */
export function offerBorrowedChunks<T extends object>(stream: T, accept: () => void): T {
  return Object.assign(stream, { [BORROW]: accept });
}

/**
 * Consumer side, before reading: "I am done with each chunk when I ask for the next".
 * True when the stream will lend its chunks.
 */
export function acceptBorrowedChunks(stream: unknown): boolean {
  const accept =
    typeof stream === "object" && stream !== null ? (stream as { [BORROW]?: () => void })[BORROW] : undefined;
  accept?.();
  return accept !== undefined;
}

/**
 * Producer side for a generator: `make` gets the flag its body reads when it starts
 * (on the first `next()`, after any acceptance), set when the consumer accepts.
 */
export function lendingStream<T extends object>(make: (lend: { borrowed: boolean }) => T): T {
  const lend = { borrowed: false };
  return offerBorrowedChunks(make(lend), () => {
    lend.borrowed = true;
  });
}

/**
 * A stream over the one `open()` returns on the first read, passing the offer
 * through: when the consumer accepts borrowed chunks, so does this stream of the
 * inner one (`yield*` hands each `next()` straight to it).
 */
export function lendingThrough(open: () => Promise<AsyncIterable<Uint8Array>>): AsyncGenerator<Uint8Array> {
  return lendingStream((lend) =>
    (async function* () {
      const inner = await open();
      if (lend.borrowed) acceptBorrowedChunks(inner);
      yield* inner;
    })(),
  );
}
