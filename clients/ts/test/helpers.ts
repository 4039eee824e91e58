// Shared helpers of the SDK's integration tests: waiting on conditions
// (never sleeping), recording subscription events, and naming users.

import type { Transport } from "@connectrpc/connect";
import { ParleyClient, type ClientOptions } from "../src/client.js";
import type { Message } from "../src/gen/parley/v1/common_pb.js";
import type { ServerFrame, SubscribeResponse } from "../src/gen/parley/v1/chat_pb.js";
import type { SubscribeOptions, Subscription, SubscriptionEvent } from "../src/subscription.js";
import { createNodeTransport } from "../src/node.js";
import { createWebTransport } from "../src/web.js";

/** A transport under test, by name. */
export interface TransportKind {
  name: string;
  make(url: string): Transport;
}

/** Every protocol parleyd serves, over the transports apps use. */
export const transports: TransportKind[] = [
  { name: "connect_node_http1", make: (url) => createNodeTransport(url) },
  { name: "grpc_node_http2", make: (url) => createNodeTransport(url, { protocol: "grpc" }) },
  { name: "grpc_web_fetch", make: (url) => createWebTransport(url, { protocol: "grpc-web" }) },
  { name: "connect_fetch", make: (url) => createWebTransport(url) },
];

/**
 * Wraps a transport to report every frame read from a Subscribe stream, before
 * the SDK sees it: tests compare what the server sent with what the app got.
 */
export function tap(inner: Transport, onFrame: (f: ServerFrame) => void): Transport {
  return {
    unary: (...args) => inner.unary(...args),
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      const res = await inner.stream(method, signal, timeoutMs, header, input, contextValues);
      if (method.name !== "Subscribe") return res;
      const source = res.message;
      async function* frames() {
        for await (const m of source) {
          const f = (m as SubscribeResponse).frame;
          if (f) onFrame(f);
          yield m;
        }
      }
      return { ...res, message: frames() };
    },
  };
}

/**
 * Polls cond every 10 ms until it returns a truthy value, and returns it;
 * rejects after timeoutMs with what was awaited.
 */
export async function waitFor<T>(what: string, cond: () => T | undefined | false | null, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let counter = 0;
/** Returns a username unique within the test run (3..32 chars of [a-z0-9_]). */
export function uniqueName(prefix: string): string {
  counter++;
  return `${prefix}_${process.pid % 10000}_${counter}_${Math.floor(Math.random() * 1e6)}`.slice(0, 32);
}

/** The password every test user gets. */
export const password = "correct horse battery";

/** Registers a fresh user and returns its client. */
export function newUser(transport: Transport, prefix: string, opts: ClientOptions = {}): Promise<ParleyClient> {
  return ParleyClient.register(transport, uniqueName(prefix), password, opts);
}

/** A subscription with every event it emitted, in order. */
export interface Recorder {
  sub: Subscription;
  events: SubscriptionEvent[];
  /** The message events' messages of a conversation, in arrival order. */
  messages(conversationId: string): Message[];
  /** Waits until an event matching pred arrived at index >= from, and returns it. */
  next<K extends SubscriptionEvent["kind"]>(kind: K, pred?: (ev: Extract<SubscriptionEvent, { kind: K }>) => boolean, from?: number, timeoutMs?: number): Promise<Extract<SubscriptionEvent, { kind: K }>>;
}

/** Subscribes client and records its events. */
export function record(client: ParleyClient, opts: Omit<SubscribeOptions, "onEvent"> = {}): Recorder {
  const events: SubscriptionEvent[] = [];
  const sub = client.subscribe({ backoff: { baseMs: 50, maxMs: 500 }, ackIntervalMs: 50, ...opts, onEvent: (ev) => events.push(ev) });
  return {
    sub,
    events,
    messages: (conv) => events.flatMap((e) => (e.kind === "message" && e.message.conversationId === conv ? [e.message] : [])),
    next: (kind, pred = () => true, from = 0, timeoutMs = 15_000) =>
      waitFor(`a ${kind} event`, () => events.slice(from).find((e) => e.kind === kind && pred(e as never)) as never, timeoutMs),
  };
}

/** Asserts-free check: the seqs of msgs, as numbers (for readable diffs). */
export function seqs(msgs: Message[]): number[] {
  return msgs.map((m) => Number(m.seq));
}
