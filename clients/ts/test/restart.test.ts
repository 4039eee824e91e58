import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import type { ParleyClient } from "../src/client.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { newUser, record, seqs, tap, transports, waitFor, type Recorder } from "./helpers.js";
import { createNodeTransport } from "../src/node.js";
import { text } from "../src/content.js";
import type { ServerFrame } from "../src/gen/parley/v1/chat_pb.js";

// One server for every transport: each restart breaks the streams of all of
// them at once, which is also what a real deploy does.
let srv: Parleyd;
beforeAll(async () => {
  srv = await startParleyd();
});
afterAll(async () => {
  await srv?.stop();
});

interface Pair {
  alice: ParleyClient;
  bob: ParleyClient;
  conv: string;
  a: Recorder;
  b: Recorder;
}

async function pair(make: (url: string) => import("@connectrpc/connect").Transport): Promise<Pair> {
  const t = make(srv.url);
  const [alice, bob] = await Promise.all([newUser(t, "alice"), newUser(t, "bob")]);
  const res = await alice.conversations.createDirect({ peer: { case: "userId", value: bob.userId } });
  const conv = res.conversation!.id;
  const a = record(alice);
  const b = record(bob);
  await Promise.all([a.next("synced"), b.next("synced")]);
  return { alice, bob, conv, a, b };
}

// Every message of the conversation reached r once, in seq order, with no hole.
async function expectComplete(p: Pair, r: Recorder): Promise<void> {
  const { messages } = await p.alice.history(p.conv, { limit: 200 });
  await waitFor("every message", () => r.messages(p.conv).length >= messages.length);
  expect(seqs(r.messages(p.conv))).toEqual(seqs(messages));
}

describe("server restart", () => {
  let pairs: Pair[];
  beforeAll(async () => {
    pairs = await Promise.all(transports.map((t) => pair(t.make)));
  });
  afterAll(async () => {
    await Promise.all(pairs?.flatMap((p) => [p.a.sub.close(), p.b.sub.close()]) ?? []);
  });

  it("commits a send started while the server is down exactly once, and the subscriptions catch up", async () => {
    for (const p of pairs) {
      await p.a.sub.send(p.conv, "before");
      await p.b.sub.send(p.conv, "before, too");
    }
    const marks = pairs.map((p) => [p.a.events.length, p.b.events.length] as const);
    await srv.stop();
    await Promise.all(pairs.flatMap((p, i) => [p.a.next("disconnected", () => true, marks[i]![0]), p.b.next("disconnected", () => true, marks[i]![1])]));

    // Both sides send while the server is down; the sends keep retrying.
    const sends = pairs.flatMap((p) => [p.a.sub.send(p.conv, "while down"), p.b.sub.send(p.conv, "while down, too")]);
    await srv.restart();
    const sent = await Promise.all(sends);

    for (const [i, p] of pairs.entries()) {
      await Promise.all([p.a.next("synced", () => true, marks[i]![0]), p.b.next("synced", () => true, marks[i]![1])]);
      const mine = sent.slice(2 * i, 2 * i + 2);
      for (const r of [p.a, p.b]) {
        await waitFor("the sends made while down", () => mine.every((m) => r.messages(p.conv).some((x) => x.seq === m.seq)));
        await expectComplete(p, r);
      }
      const { messages } = await p.bob.history(p.conv, { limit: 200 });
      const texts = messages.map((m) => (m.content?.body.case === "text" ? m.content.body.value : ""));
      expect(texts.filter((x) => x === "while down")).toHaveLength(1);
      expect(texts.filter((x) => x === "while down, too")).toHaveLength(1);
    }
  });

  it("does not deliver acknowledged messages to the device again", async () => {
    for (const p of pairs) {
      await p.b.sub.send(p.conv, "ack me");
      await expectComplete(p, p.a);
    }
    // close() sends the final acks; a graceful stop writes them to the store.
    await Promise.all(pairs.map((p) => p.a.sub.close()));
    await srv.stop();
    await srv.restart();
    for (const p of pairs) {
      const last = p.a.messages(p.conv).at(-1)!.seq;
      // A new subscription has no de-duplication memory: only the server's
      // cursor keeps it from getting the old messages again.
      const again = record(p.alice);
      p.a = again;
      await again.next("synced");
      expect(again.messages(p.conv)).toEqual([]);
      const fresh = await p.b.sub.send(p.conv, "new");
      await waitFor("the new message", () => again.messages(p.conv).length > 0);
      expect(seqs(again.messages(p.conv))).toEqual([Number(fresh.seq)]);
      expect(fresh.seq).toBe(last + 1n);
    }
  });

  it("gets unacknowledged messages again after a reconnect, hands them over once", async () => {
    const frames: ServerFrame[] = [];
    const t = tap(createNodeTransport(srv.url), (f) => frames.push(f));
    const [carol, dave] = await Promise.all([newUser(t, "carol"), newUser(t, "dave")]);
    const conv = (await carol.conversations.createDirect({ peer: { case: "userId", value: dave.userId } })).conversation!.id;
    // A slow ack interval: nothing is acked before the restart.
    const slow = record(dave, { ackIntervalMs: 60_000 });
    await slow.next("synced");
    const m = await carol.chat.sendMessage({ conversationId: conv, clientMsgId: "unacked-1", content: text("unacked") });
    const seq = m.message!.seq;
    await waitFor("the message", () => slow.messages(conv).some((x) => x.seq === seq));
    const before = slow.events.length;
    await srv.stop();
    await srv.restart();
    await slow.next("synced", () => true, before);
    // The server sent it twice (once live, once in catch-up); the app got it once.
    const sentTwice = frames.filter((f) => f.kind.case === "message" && f.kind.value.seq === seq && f.kind.value.conversationId === conv);
    expect(sentTwice).toHaveLength(2);
    expect(slow.messages(conv).filter((x) => x.seq === seq)).toHaveLength(1);
    await slow.sub.close();
  });

  it("reconnects when the server goes silent past the heartbeat timeout", async () => {
    const quiet = await startParleyd({ args: ["-heartbeat-interval", "200ms", "-heartbeat-timeout", "800ms"] });
    try {
      const p = await pairWith(quiet);
      quiet.kill("SIGSTOP");
      let dis;
      try {
        dis = await p.a.next("disconnected", () => true, 0, 10_000);
      } finally {
        quiet.kill("SIGCONT");
      }
      expect(dis.error.code).toBe(Code.DeadlineExceeded);
      await p.a.next("synced", () => true, p.a.events.indexOf(dis));
      await p.a.sub.close();
    } finally {
      await quiet.stop();
    }
  });
});

async function pairWith(s: Parleyd): Promise<{ a: Recorder }> {
  const t = transports[0]!.make(s.url);
  const alice = await newUser(t, "quiet");
  const a = record(alice);
  await a.next("synced");
  return { a };
}

describe("reconnectNow", () => {
  it("cuts a long backoff short once the server is back", async () => {
    const s = await startParleyd();
    try {
      const alice = await newUser(transports[0]!.make(s.url), "eager");
      // A backoff far longer than the test may wait: only reconnectNow can
      // bring the stream back in time.
      const a = record(alice, { backoff: { baseMs: 120_000, maxMs: 120_000 } });
      await a.next("synced");
      await s.stop();
      const dis = await a.next("disconnected");
      expect(dis.retryInMs).toBeGreaterThan(0);
      await s.restart();
      a.sub.reconnectNow();
      await a.next("synced", () => true, a.events.indexOf(dis), 10_000);
      expect(a.sub.state).toBe("live");
      await a.sub.close();
    } finally {
      await s.stop();
    }
  });
});
