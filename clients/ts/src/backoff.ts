/**
 * Reconnect and retry delays: exponential growth with full jitter (AWS
 * Architecture Blog, "Exponential Backoff And Jitter"). Attempt n waits a
 * uniformly random time in [0, min(maxMs, baseMs·2ⁿ)). Full jitter spreads
 * a crowd of clients that lost the same server over the whole window instead
 * of sending them back in waves.
 */
export class Backoff {
  /** Delay ceiling of attempt 0, in milliseconds. */
  readonly baseMs: number;
  /** Largest delay ceiling, in milliseconds. */
  readonly maxMs: number;
  readonly #random: () => number;

  /**
   * @param baseMs ceiling of the first attempt (default 500; negative counts as 0).
   * @param maxMs cap on every ceiling (default 30 000; raised to baseMs if below it).
   * @param random uniform in [0, 1); Math.random unless a test pins it.
   */
  constructor(baseMs = 500, maxMs = 30_000, random: () => number = Math.random) {
    this.baseMs = Math.max(0, baseMs);
    this.maxMs = Math.max(this.baseMs, maxMs);
    this.#random = random;
  }

  /** Returns min(maxMs, baseMs·2^attempt): the exclusive upper bound of attempt's delay. */
  ceiling(attempt: number): number {
    const n = Math.max(0, Math.floor(attempt));
    // 2^1024 is Infinity in doubles, so min() caps any attempt count.
    return Math.min(this.maxMs, this.baseMs * 2 ** n);
  }

  /** Returns attempt's delay in whole milliseconds, uniform in [0, ceiling(attempt)). */
  delay(attempt: number): number {
    return Math.floor(this.#random() * this.ceiling(attempt));
  }
}

/**
 * Resolves after ms, or as soon as signal aborts (never rejects): waiting
 * callers re-check their own state afterwards.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
