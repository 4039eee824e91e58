/**
 * Sends one acknowledgement: "this device has every message of
 * conversationId up to seq". It may reject; the ack is then kept and retried.
 */
export type AckSender = (conversationId: string, seq: bigint) => Promise<void>;

/**
 * AckCoalescer keeps, per conversation, the highest seq handed to the
 * application and sends it at most once per interval, so a burst of messages
 * costs one Ack call per conversation rather than one per message.
 *
 * Acking seq N tells the server the device has everything up to N, so only
 * seqs the application was actually handed may be recorded, and they are
 * handed in seq order per conversation (see Dedup). Flushes run one after
 * another, so the server never sees a conversation's acks out of order.
 */
export class AckCoalescer {
  readonly #send: AckSender;
  readonly #intervalMs: number;
  #pending = new Map<string, bigint>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  // Bumped by reset(): acks of an older generation belong to a history the
  // server no longer has, so a failed flush of them is not put back.
  #generation = 0;
  #stopped = false;
  #chain: Promise<void> = Promise.resolve();

  /**
   * @param send called once per conversation per flush.
   * @param intervalMs how long acks gather before a flush (default 1000).
   */
  constructor(send: AckSender, intervalMs = 1_000) {
    this.#send = send;
    this.#intervalMs = Math.max(0, intervalMs);
  }

  /** Records that the application was handed seq of conversationId; a flush follows within the interval. */
  handed(conversationId: string, seq: bigint): void {
    if (seq > (this.#pending.get(conversationId) ?? 0n)) this.#pending.set(conversationId, seq);
    this.#schedule();
  }

  /** Returns the acks waiting for the next flush (a copy). */
  pending(): Map<string, bigint> {
    return new Map(this.#pending);
  }

  /** Drops every pending ack, including those of a flush in flight should it fail (the server's history was reset). */
  reset(): void {
    this.#generation++;
    this.#pending.clear();
    this.#cancelTimer();
  }

  /**
   * Sends the pending acks now, after any flush already running. Resolves
   * once they were sent or, on failure, put back for the next flush (which is
   * then scheduled unless stopped); it never rejects.
   */
  flush(): Promise<void> {
    this.#cancelTimer();
    this.#chain = this.#chain.then(() => this.#flushOnce());
    return this.#chain;
  }

  /** Stops scheduling flushes; flush() still works (the final one on close). */
  stop(): void {
    this.#stopped = true;
    this.#cancelTimer();
  }

  async #flushOnce(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    const generation = this.#generation;
    this.#pending = new Map();
    const results = await Promise.allSettled([...batch].map(([conv, seq]) => this.#send(conv, seq)));
    if (generation !== this.#generation) return;
    let failed = false;
    [...batch].forEach(([conv, seq], i) => {
      if (results[i]?.status !== "rejected") return;
      failed = true;
      // Newer acks may have arrived meanwhile: keep the higher seq.
      if (seq > (this.#pending.get(conv) ?? 0n)) this.#pending.set(conv, seq);
    });
    if (failed) this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#stopped || this.#pending.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#intervalMs);
  }

  #cancelTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
