/**
 * Dedup remembers, per conversation, the highest seq handed to the
 * application. The server delivers each conversation in seq order, and after
 * a reconnect it may deliver again what was handed but not yet acknowledged,
 * so anything at or below the mark is a repeat. The marks belong to one
 * server epoch: reset() them when it changes.
 */
export class Dedup {
  readonly #last = new Map<string, bigint>();

  /**
   * Reports whether seq is above conversationId's mark and, if so, raises the
   * mark to it: true means "new, hand it over", false "seen, drop it".
   */
  admit(conversationId: string, seq: bigint): boolean {
    if (seq <= (this.#last.get(conversationId) ?? 0n)) return false;
    this.#last.set(conversationId, seq);
    return true;
  }

  /** Returns conversationId's mark: the highest seq admitted, 0n if none. */
  mark(conversationId: string): bigint {
    return this.#last.get(conversationId) ?? 0n;
  }

  /** Forgets every mark (the server's history was reset). */
  reset(): void {
    this.#last.clear();
  }
}
