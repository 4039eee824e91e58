import { describe, expect, it } from "vitest";
import { Backoff, sleep } from "../src/backoff.js";

describe("Backoff", () => {
  it("doubles the ceiling per attempt up to the cap", () => {
    const b = new Backoff(500, 30_000);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => b.ceiling(n))).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(b.ceiling(10_000)).toBe(30_000);
    expect(b.ceiling(-3)).toBe(500);
  });

  it("draws full jitter in [0, ceiling)", () => {
    let r = 0;
    const b = new Backoff(100, 1_000, () => r);
    expect(b.delay(3)).toBe(0);
    r = 0.5;
    expect(b.delay(3)).toBe(400);
    r = 0.999999;
    expect(b.delay(3)).toBe(799);
    expect(b.delay(99)).toBe(999);
  });

  it("stays in bounds with the real random source", () => {
    const b = new Backoff(10, 100);
    for (let n = 0; n < 200; n++) {
      const d = b.delay(n % 8);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(b.ceiling(n % 8));
    }
  });

  it("treats a cap below the base as the base", () => {
    const b = new Backoff(1_000, 10);
    expect(b.ceiling(0)).toBe(1_000);
    expect(b.ceiling(5)).toBe(1_000);
  });
});

describe("sleep", () => {
  it("ends early when its signal aborts", async () => {
    const ac = new AbortController();
    const started = Date.now();
    const p = sleep(60_000, ac.signal);
    ac.abort();
    await p;
    expect(Date.now() - started).toBeLessThan(5_000);
    await sleep(60_000, ac.signal); // already aborted: returns at once
  });
});
