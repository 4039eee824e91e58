import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ParleyClient } from "../src/client.js";
import { MessageKind } from "../src/gen/parley/v1/common_pb.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { newUser, record, seqs, transports, waitFor, type Recorder } from "./helpers.js";

let srv: Parleyd;
beforeAll(async () => {
  srv = await startParleyd();
});
afterAll(async () => {
  await srv?.stop();
});

describe.each(transports)("chat over $name", ({ make }) => {
  let alice: ParleyClient;
  let bob: ParleyClient;
  let conv: string;
  let a: Recorder;
  let b: Recorder;

  beforeAll(async () => {
    const t = make(srv.url);
    [alice, bob] = await Promise.all([newUser(t, "alice"), newUser(t, "bob")]);
    const res = await alice.conversations.createDirect({ peer: { case: "username", value: bob.user.username } });
    conv = res.conversation!.id;
    a = record(alice);
    b = record(bob);
    await Promise.all([a.next("synced"), b.next("synced")]);
  });
  afterAll(async () => {
    await Promise.all([a?.sub.close(), b?.sub.close()]);
  });

  it("delivers messages both ways, once each, in seq order; SendAck is the sender's delivery", async () => {
    const sent = [];
    for (let i = 0; i < 5; i++) {
      sent.push(await a.sub.send(conv, `from alice ${i}`));
      sent.push(await b.sub.send(conv, `from bob ${i}`));
    }
    const want = seqs(sent);
    expect(want).toEqual([...want].sort((x, y) => x - y));
    await waitFor("alice has every message", () => a.messages(conv).length >= sent.length);
    await waitFor("bob has every message", () => b.messages(conv).length >= sent.length);
    for (const r of [a, b]) {
      expect(seqs(r.messages(conv))).toEqual(want);
    }
    // Alice's own messages reached her stream as SendAcks, with her device id.
    const own = a.messages(conv).filter((m) => m.senderId === alice.userId);
    expect(own.map((m) => m.senderDeviceId)).toEqual(Array(5).fill(alice.deviceId));
    expect(a.sub.state).toBe("live");
  });

  it("returns the original for a re-sent client_msg_id and delivers it once", async () => {
    const first = await a.sub.send(conv, "idempotent", { clientMsgId: "fixed-id-1" });
    const again = await a.sub.send(conv, "idempotent", { clientMsgId: "fixed-id-1" });
    expect(again.seq).toBe(first.seq);
    expect(again.id).toBe(first.id);
    const marker = await a.sub.send(conv, "after the duplicate");
    await waitFor("bob has the marker", () => b.messages(conv).some((m) => m.seq === marker.seq));
    await waitFor("alice has the marker", () => a.messages(conv).some((m) => m.seq === marker.seq));
    expect(a.messages(conv).filter((m) => m.seq === first.seq)).toHaveLength(1);
    expect(b.messages(conv).filter((m) => m.seq === first.seq)).toHaveLength(1);
  });

  it("markRead produces a receipt for the peer", async () => {
    const m = await b.sub.send(conv, "read me");
    await waitFor("alice has it", () => a.messages(conv).some((x) => x.seq === m.seq));
    const from = b.events.length;
    await a.sub.markRead(conv, m.seq);
    const ev = await b.next("receipt", (e) => e.receipt.conversationId === conv && e.receipt.lastReadSeq === m.seq, from);
    expect(ev.receipt.userId).toBe(alice.userId);
  });

  it("setTyping produces typing events", async () => {
    const from = b.events.length;
    await a.sub.setTyping(conv, true);
    const on = await b.next("typing", (e) => e.typing.userId === alice.userId && e.typing.typing, from);
    expect(on.typing.conversationId).toBe(conv);
    await a.sub.setTyping(conv, false);
    await b.next("typing", (e) => e.typing.userId === alice.userId && !e.typing.typing, from);
  });

  it("recall produces the system message for both", async () => {
    const m = await a.sub.send(conv, "oops");
    await a.sub.recall(conv, m.seq);
    const isNotice = (x: { kind: MessageKind; system?: { event: { case?: string; value?: unknown } } }) =>
      x.kind === MessageKind.SYSTEM && x.system?.event.case === "messageRecalled" && (x.system.event.value as { seq: bigint }).seq === m.seq;
    for (const r of [a, b]) {
      const notice = await waitFor("the recall notice", () => r.messages(conv).find(isNotice));
      expect(notice.seq).toBeGreaterThan(m.seq);
    }
    const { messages } = await bob.history(conv, { anchorSeq: m.seq - 1n, direction: "after", limit: 1 });
    expect(messages[0]?.recalled).toBe(true);
    expect(messages[0]?.content).toBeUndefined();
  });

  it("pages history both ways", async () => {
    const { messages: all } = await alice.history(conv, { limit: 200 });
    expect(all.length).toBeGreaterThan(6);
    const ordered = seqs(all);
    expect(ordered).toEqual([...ordered].sort((x, y) => x - y));
    // Backwards from the newest, three at a time.
    const back: number[] = [];
    let anchor = 0n;
    for (;;) {
      const page = await alice.history(conv, { anchorSeq: anchor, direction: "before", limit: 3 });
      back.unshift(...seqs(page.messages));
      if (!page.hasMore) break;
      anchor = page.messages[0]!.seq;
    }
    expect(back).toEqual(ordered);
    // Forwards from the start.
    const fwd: number[] = [];
    anchor = 0n;
    for (;;) {
      const page = await bob.history(conv, { anchorSeq: anchor, direction: "after", limit: 4 });
      fwd.push(...seqs(page.messages));
      if (!page.hasMore) break;
      anchor = page.messages.at(-1)!.seq;
    }
    expect(fwd).toEqual(ordered);
  });

  it("rejects bad input with InvalidArgument naming the field", async () => {
    const err = await a.sub.send(conv, "").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(/content\.text/);
    const err2 = await alice.history("", {}).catch((e: unknown) => e);
    expect((err2 as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err2 as ConnectError).rawMessage).toMatch(/conversation_id/);
  });
});
