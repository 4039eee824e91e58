import { describe, expect, it } from "vitest";
import { Dedup } from "../src/dedup.js";

describe("Dedup", () => {
  it("admits each seq once per conversation, in order", () => {
    const d = new Dedup();
    expect([1n, 2n, 2n, 3n, 1n, 4n].map((s) => d.admit("c1", s))).toEqual([true, true, false, true, false, true]);
    expect(d.mark("c1")).toBe(4n);
  });

  it("keeps conversations apart", () => {
    const d = new Dedup();
    expect(d.admit("c1", 5n)).toBe(true);
    expect(d.admit("c2", 1n)).toBe(true);
    expect(d.admit("c2", 5n)).toBe(true);
    expect(d.admit("c1", 5n)).toBe(false);
    expect(d.mark("c3")).toBe(0n);
  });

  it("drops a redelivered prefix after a reconnect and admits what follows", () => {
    const d = new Dedup();
    for (let s = 1n; s <= 10n; s++) d.admit("c", s);
    const redelivered = [7n, 8n, 9n, 10n, 11n, 12n];
    expect(redelivered.filter((s) => d.admit("c", s))).toEqual([11n, 12n]);
  });

  it("forgets everything on reset (a new epoch)", () => {
    const d = new Dedup();
    d.admit("c", 9n);
    d.reset();
    expect(d.mark("c")).toBe(0n);
    expect(d.admit("c", 1n)).toBe(true);
  });
});
