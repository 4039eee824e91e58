import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AckCoalescer } from "../src/acks.js";

describe("AckCoalescer", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function recorder(fail: (conv: string, seq: bigint) => boolean = () => false) {
    const sent: [string, bigint][] = [];
    const send = async (conv: string, seq: bigint): Promise<void> => {
      if (fail(conv, seq)) throw new Error(`ack ${conv} ${seq} failed`);
      sent.push([conv, seq]);
    };
    return { sent, send };
  }

  it("sends the highest seq per conversation once per interval", async () => {
    const r = recorder();
    const a = new AckCoalescer(r.send, 1_000);
    for (let s = 1n; s <= 50n; s++) a.handed("c1", s);
    a.handed("c2", 7n);
    a.handed("c2", 3n); // lower: ignored
    await vi.advanceTimersByTimeAsync(999);
    expect(r.sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(r.sent).toEqual([
      ["c1", 50n],
      ["c2", 7n],
    ]);
    // Nothing new: no further calls, and no idle timer.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(r.sent).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("keeps failed acks and retries them at the next interval, with anything newer", async () => {
    let down = true;
    const r = recorder(() => down);
    const a = new AckCoalescer(r.send, 100);
    a.handed("c", 3n);
    await vi.advanceTimersByTimeAsync(100);
    expect(r.sent).toEqual([]);
    expect(a.pending()).toEqual(new Map([["c", 3n]]));
    down = false;
    a.handed("c", 4n);
    await vi.advanceTimersByTimeAsync(100);
    expect(r.sent).toEqual([["c", 4n]]);
    expect(a.pending().size).toBe(0);
  });

  it("flushes at once on demand and then stops scheduling", async () => {
    const r = recorder();
    const a = new AckCoalescer(r.send, 60_000);
    a.handed("c", 9n);
    a.stop();
    await a.flush();
    expect(r.sent).toEqual([["c", 9n]]);
    a.handed("c", 10n);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(r.sent).toHaveLength(1);
  });

  it("drops pending acks on reset, even those of a failing flush in flight", async () => {
    let release: (() => void) | undefined;
    const sent: bigint[] = [];
    const a = new AckCoalescer(async (_c, seq) => {
      await new Promise<void>((res) => (release = res));
      sent.push(seq);
      throw new Error("lost");
    }, 100);
    a.handed("c", 5n);
    const flushing = a.flush();
    await vi.advanceTimersByTimeAsync(0);
    a.reset();
    release?.();
    await flushing;
    expect(sent).toEqual([5n]);
    expect(a.pending().size).toBe(0);
  });

  it("runs flushes one after another, so a conversation's acks stay in order", async () => {
    const order: bigint[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    let started: (() => void) | undefined;
    const firstStarted = new Promise<void>((res) => (started = res));
    const a = new AckCoalescer(async (_c, seq) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      started?.();
      await vi.advanceTimersByTimeAsync(0);
      order.push(seq);
      inFlight--;
    }, 10);
    a.handed("c", 1n);
    const f1 = a.flush();
    await firstStarted;
    a.handed("c", 2n); // arrives while the first ack is on the wire
    const f2 = a.flush();
    await Promise.all([f1, f2]);
    expect(order).toEqual([1n, 2n]);
    expect(maxInFlight).toBe(1);
  });
});
