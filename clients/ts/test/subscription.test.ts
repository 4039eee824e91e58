import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { createNodeTransport } from "../src/node.js";
import type { ParleyClient } from "../src/client.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { newUser, record, seqs } from "./helpers.js";

// Catch-up sends at most 3 messages per conversation, then a gap for the rest.
let srv: Parleyd;
beforeAll(async () => {
  srv = await startParleyd({ args: ["-catchup-limit", "3"] });
});
afterAll(async () => {
  await srv?.stop();
});

async function sendMany(c: ParleyClient, conv: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await c.chat.sendMessage({ conversationId: conv, clientMsgId: `m-${Date.now()}-${i}`, content: { body: { case: "text", value: `m${i}` } } });
  }
}

describe("subscription", () => {
  it("reports a gap the app pages with history, acks past it, and flags a changed epoch", async () => {
    const t = createNodeTransport(srv.url);
    const [alice, bob] = await Promise.all([newUser(t, "alice"), newUser(t, "bob")]);
    const conv = (await alice.conversations.createDirect({ peer: { case: "userId", value: bob.userId } })).conversation!.id;
    const first = record(bob);
    const welcome = await first.next("connected");
    await first.next("synced");
    await first.sub.close();
    expect(first.events.some((e) => e.kind === "epochChanged")).toBe(false);
    expect(first.sub.epoch).toBe(welcome.welcome.epoch);

    await sendMany(alice, conv, 8);
    // Bob comes back with an epoch from another history: the SDK says so first.
    const r = record(bob, { epoch: "an-older-epoch" });
    await r.next("synced");
    expect(r.events.map((e) => e.kind)).toEqual(["epochChanged", "connected", "gap", "message", "message", "message", "synced"]);
    const gap = r.events[2] as Extract<(typeof r.events)[number], { kind: "gap" }>;
    expect(gap.conversationId).toBe(conv);
    expect(seqs(r.messages(conv))).toEqual([6, 7, 8]);
    const hole = await bob.history(conv, { anchorSeq: gap.fromSeq, direction: "after", limit: Number(gap.toSeq - gap.fromSeq) });
    expect(seqs(hole.messages)).toEqual([1, 2, 3, 4, 5]);
    expect(hole.hasMore).toBe(true); // 6..8 lie beyond
    await r.sub.close();

    // The gap and the messages were acked: nothing comes again.
    const again = record(bob, { epoch: r.sub.epoch });
    await again.next("synced");
    expect(again.events.map((e) => e.kind)).toEqual(["connected", "synced"]);
    await again.sub.close();
  });

  it("close is final: one closed event, retrying sends cancelled, later sends refused", async () => {
    const t = createNodeTransport(srv.url);
    const erin = await newUser(t, "erin");
    const frank = await newUser(t, "frank");
    const conv = (await erin.conversations.createDirect({ peer: { case: "userId", value: frank.userId } })).conversation!.id;
    const r = record(erin);
    await r.next("synced");
    await srv.stop();
    try {
      const pending = r.sub.send(conv, "never confirmed");
      await r.next("disconnected");
      await Promise.all([r.sub.close(), r.sub.close()]);
      const err = await pending.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Canceled);
      await expect(r.sub.send(conv, "too late")).rejects.toMatchObject({ code: Code.Canceled });
      expect(r.events.filter((e) => e.kind === "closed")).toEqual([{ kind: "closed" }]);
      expect(r.events.at(-1)).toEqual({ kind: "closed" });
      expect(r.sub.state).toBe("closed");
    } finally {
      await srv.restart();
    }
  });
});
