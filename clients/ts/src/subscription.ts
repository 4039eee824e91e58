import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type { ChatService, Presence, Receipt, SendMessageResponse, ServerFrame, Typing, Welcome } from "./gen/parley/v1/chat_pb.js";
import type { Content, Message } from "./gen/parley/v1/common_pb.js";
import { AckCoalescer } from "./acks.js";
import { Backoff, sleep } from "./backoff.js";
import { newClientMsgId, text } from "./content.js";
import { Dedup } from "./dedup.js";
import { ParleyAuthError, isAccessExpired, isTransient } from "./errors.js";
import type { TokenManager } from "./tokens.js";

// How long a new stream may take to send its Welcome.
const handshakeTimeoutMs = 30_000;
// Used when a Welcome carries no heartbeat timeout (the server's default).
const defaultHeartbeatTimeoutMs = 90_000;
// One SendMessage attempt; a server that neither answers nor fails within it
// is treated as unreachable and the send is retried (with the same id).
const sendAttemptTimeoutMs = 30_000;

/** Options of {@link ParleyClient.subscribe}. */
export interface SubscribeOptions {
  /**
   * Receives every event, synchronously and in order. It must not throw: an
   * exception is re-thrown asynchronously (as an uncaught error, like an
   * event listener's) and the event still counts as handed (and is acked).
   */
  onEvent: (ev: SubscriptionEvent) => void;
  /** Reconnect and send-retry delays: full jitter over min(maxMs, baseMs·2ⁿ). Defaults 500 and 30 000 ms. */
  backoff?: { baseMs?: number; maxMs?: number };
  /** How long acks gather before they are sent (one Ack call per conversation). Default 1000 ms. */
  ackIntervalMs?: number;
  /** The last Welcome.epoch the app saw (kept with its local state); a different one on connect yields epochChanged. */
  epoch?: string;
}

/**
 * What a {@link Subscription} reports. Message and gap events are
 * de-duplicated by (conversationId, seq) and arrive in seq order per
 * conversation; the others are passed on as the server sent them.
 */
export type SubscriptionEvent =
  /** A stream is open; welcome.epoch identifies the server's history. */
  | { kind: "connected"; welcome: Welcome }
  /** Catch-up after the device's cursors is done; live traffic follows. */
  | { kind: "synced" }
  /**
   * A message for the app: a Message frame, or the SendAck that is this
   * device's in-order delivery of its own message. Each (conversationId, seq)
   * arrives once.
   */
  | { kind: "message"; message: Message }
  /** Catch-up skipped seqs fromSeq+1..toSeq of a conversation: page them with history(). */
  | { kind: "gap"; conversationId: string; fromSeq: bigint; toSeq: bigint }
  /** A member read a conversation up to receipt.lastReadSeq. */
  | { kind: "receipt"; receipt: Receipt }
  /** A member started or stopped typing. */
  | { kind: "typing"; typing: Typing }
  /** A user came online or went offline. */
  | { kind: "presence"; presence: Presence }
  /** The server reported a failed request on the stream; the stream goes on. */
  | { kind: "error"; error: ConnectError }
  /** The server's history was reset or restored: drop local state (de-duplication starts over). */
  | { kind: "epochChanged"; epoch: string }
  /** The stream broke; the subscription reconnects by itself after retryInMs. */
  | { kind: "disconnected"; error: ConnectError; retryInMs: number }
  /** The subscription ended for good: close() was called (no error) or the session is over (a ParleyAuthError). Nothing follows. */
  | { kind: "closed"; error?: Error };

/** Where a {@link Subscription} stands. */
export type SubscriptionState = "connecting" | "syncing" | "live" | "backoff" | "closed";

/**
 * What a Subscription needs from its client.
 * @internal
 */
export interface SubscriptionDeps {
  chat: Client<typeof ChatService>;
  tokens: TokenManager;
}

/**
 * Subscription is a device's live feed: one ChatService.Subscribe stream at a
 * time, reopened by itself when it breaks (exponential backoff with full
 * jitter), when the server asks with a Resync frame, when the server is
 * silent for longer than the Welcome's heartbeat timeout, or when the access
 * token expired (after a refresh). The server resumes each new stream after
 * the device's acknowledged cursors, so what was handed but not yet acked may
 * come again: it is dropped here (de-duplication by (conversationId, seq)).
 *
 * Acks: every message handed to onEvent is acknowledged with ChatService.Ack,
 * the highest seq per conversation, coalesced every ackIntervalMs, and
 * flushed by close().
 *
 * Sends go as unary calls (SendMessage and friends), so they work whether or
 * not the stream is open; the stream delivers the device's own new messages
 * back as SendAck frames, reported as message events in seq order.
 *
 * Created by {@link ParleyClient.subscribe}; it starts connecting at once. A
 * device should hold one subscription: the server replaces an older stream of
 * the same device with a newer one.
 */
export class Subscription {
  readonly #chat: Client<typeof ChatService>;
  readonly #tokens: TokenManager;
  readonly #onEvent: (ev: SubscriptionEvent) => void;
  readonly #backoff: Backoff;
  readonly #dedup = new Dedup();
  readonly #acks: AckCoalescer;
  // Aborted when the subscription ends: stops backoff sleeps, sends in
  // flight and the open stream.
  readonly #life = new AbortController();
  readonly #stopAuthWatch: () => void;
  #state: SubscriptionState = "connecting";
  #epoch: string;
  #heartbeatTimeoutMs: number | undefined;
  #closedWith: Error | undefined;
  #closing: Promise<void> | undefined;
  // Aborted by reconnectNow to cut a backoff wait short; set only while
  // #run waits.
  #wake: AbortController | undefined;

  /**
   * Use {@link ParleyClient.subscribe}.
   * @internal
   */
  constructor(deps: SubscriptionDeps, opts: SubscribeOptions) {
    this.#chat = deps.chat;
    this.#tokens = deps.tokens;
    this.#onEvent = opts.onEvent;
    this.#backoff = new Backoff(opts.backoff?.baseMs ?? 500, opts.backoff?.maxMs ?? 30_000);
    this.#epoch = opts.epoch ?? "";
    this.#acks = new AckCoalescer(async (conversationId, seq) => {
      await this.#chat.ack({ conversationId, seq });
    }, opts.ackIntervalMs ?? 1_000);
    this.#stopAuthWatch = this.#tokens.onEnd((err) => this.#finish(err));
    void this.#run();
  }

  /** Where the subscription stands; "closed" is final. */
  get state(): SubscriptionState {
    return this.#state;
  }

  /** The epoch of the latest Welcome ("" before the first, unless given in the options). Persist it with local state. */
  get epoch(): string {
    return this.#epoch;
  }

  /**
   * Sends a message with SendMessage and resolves with the stored message
   * (the original, if clientMsgId had been committed before). The call is
   * retried with the same clientMsgId (crypto.randomUUID() unless given),
   * with backoff, while the server is unreachable or the call fails in
   * transit (Unavailable, DeadlineExceeded, ResourceExhausted, Internal,
   * Unknown), so a send started while the server is down is committed once,
   * after it returns. Rejects with the server's ConnectError for anything
   * else (InvalidArgument, NotFound, PermissionDenied, ...), with
   * ParleyAuthError when the session is over, or with Canceled once the
   * subscription is closed (the message may then have been committed;
   * sending again with the same clientMsgId finds out). The app also gets the
   * message as a message event from the stream, in seq order.
   */
  async send(conversationId: string, content: Content | string, opts: { clientMsgId?: string } = {}): Promise<Message> {
    const clientMsgId = opts.clientMsgId ?? newClientMsgId();
    const body = typeof content === "string" ? text(content) : content;
    for (let attempt = 0; ; attempt++) {
      this.#throwIfClosed();
      let res: SendMessageResponse;
      try {
        res = await this.#chat.sendMessage(
          { conversationId, clientMsgId, content: body },
          { signal: this.#life.signal, timeoutMs: sendAttemptTimeoutMs },
        );
      } catch (err) {
        this.#throwIfClosed();
        if (!isTransient(err)) throw err;
        await sleep(this.#backoff.delay(attempt), this.#life.signal);
        continue;
      }
      if (!res.message) throw new ConnectError("parley: SendMessage answered without the message", Code.Internal);
      return res.message;
    }
  }

  /**
   * Moves this user's read mark of the conversation up to seq (never back);
   * the other members get a receipt event. Rejects with the server's
   * ConnectError, or ParleyAuthError when the session is over.
   */
  async markRead(conversationId: string, seq: bigint): Promise<void> {
    await this.#chat.markRead({ conversationId, seq });
  }

  /** Tells the other members this user is (not) typing; they get a typing event. Not stored. */
  async setTyping(conversationId: string, typing: boolean): Promise<void> {
    await this.#chat.setTyping({ conversationId, typing });
  }

  /**
   * Withdraws the message at seq (its sender within the server's recall
   * window, or a group owner or admin). Every member then gets a system
   * message (MessageRecalled) in the stream. Rejects with PermissionDenied
   * past the window, FailedPrecondition if already recalled.
   */
  async recall(conversationId: string, seq: bigint): Promise<void> {
    await this.#chat.recallMessage({ conversationId, seq });
  }

  /**
   * Ends the subscription: emits "closed", closes the stream, cancels sends
   * still retrying, and sends the pending acks. Idempotent. The returned
   * promise (callers may ignore it) resolves once the final acks were sent
   * or failed; it never rejects.
   */
  close(): Promise<void> {
    this.#finish();
    this.#closing ??= this.#tokens.ended ? Promise.resolve() : this.#acks.flush();
    return this.#closing;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#isClosed()) {
      const token = this.#tokens.credentials().accessToken;
      let err: unknown;
      try {
        await this.#connectOnce(() => {
          attempt = 0;
        });
      } catch (e) {
        err = e;
      }
      if (this.#isClosed()) return;
      err = this.#tokens.classify(err);
      if (err instanceof ParleyAuthError) return this.#finish(err);
      if (isAccessExpired(err)) {
        try {
          await this.#tokens.refresh(token);
        } catch (e) {
          if (e instanceof ParleyAuthError) return this.#finish(e);
          // The refresh itself failed in transit: back off and try again.
        }
        if (this.#isClosed()) return;
      }
      const retryInMs = this.#backoff.delay(attempt++);
      this.#state = "backoff";
      this.#emit({ kind: "disconnected", error: ConnectError.from(err), retryInMs });
      const wake = new AbortController();
      this.#wake = wake;
      await sleep(retryInMs, AbortSignal.any([this.#life.signal, wake.signal]));
      this.#wake = undefined;
    }
  }

  /**
   * Ends the wait between reconnect attempts now, when there is one: call it
   * when the app learns the network or the server is back (the browser's
   * "online" event, the page becoming visible again), instead of waiting out
   * a backoff that may have grown to its maximum. Otherwise it does nothing.
   */
  reconnectNow(): void {
    this.#wake?.abort();
  }

  // connectOnce runs one stream until it breaks, and always rejects with why
  // (a normal end is an error too: the subscription wants the stream open).
  async #connectOnce(welcomed: () => void): Promise<void> {
    this.#state = "connecting";
    const stream = new AbortController();
    const stopStream = (): void => stream.abort();
    this.#life.signal.addEventListener("abort", stopStream);
    let silenceMs = handshakeTimeoutMs;
    let silent: ConnectError | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // The watchdog: any frame (the server sends a Pong every heartbeat
    // interval) re-arms it; silence past the limit means a dead connection
    // that TCP may take minutes to notice.
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        silent = new ConnectError(`parley: no frame from the server for ${silenceMs} ms`, Code.DeadlineExceeded);
        stream.abort(silent);
      }, silenceMs);
    };
    arm();
    try {
      let first = true;
      for await (const res of this.#chat.subscribe({}, { signal: stream.signal })) {
        const frame = res.frame;
        if (!frame) continue;
        if (first) {
          if (frame.kind.case !== "welcome") throw new ConnectError("parley: the first frame is not a welcome", Code.Internal);
          first = false;
          this.#heartbeatTimeoutMs = durationMs(frame.kind.value.heartbeatTimeout) || defaultHeartbeatTimeoutMs;
          silenceMs = this.#heartbeatTimeoutMs;
          arm();
          welcomed();
          this.#welcome(frame.kind.value);
          continue;
        }
        arm();
        this.#handle(frame);
        if (this.#isClosed()) return;
      }
      throw new ConnectError("parley: the server ended the stream", Code.Unavailable);
    } catch (err) {
      throw silent ?? err;
    } finally {
      clearTimeout(timer);
      this.#life.signal.removeEventListener("abort", stopStream);
      stream.abort();
    }
  }

  #welcome(w: Welcome): void {
    const changed = this.#epoch !== "" && this.#epoch !== w.epoch;
    this.#epoch = w.epoch;
    this.#state = "syncing";
    if (changed) {
      // Seqs of the old history mean nothing in the new one.
      this.#dedup.reset();
      this.#acks.reset();
      this.#emit({ kind: "epochChanged", epoch: w.epoch });
    }
    this.#emit({ kind: "connected", welcome: w });
  }

  #handle(frame: ServerFrame): void {
    const k = frame.kind;
    switch (k.case) {
      case "message":
        return this.#deliver(k.value.conversationId, k.value.seq, { kind: "message", message: k.value });
      case "sendAck": {
        // A duplicate's SendAck arrives out of stream order and is no
        // delivery: the original comes (or came) through the stream.
        const m = k.value.message;
        if (k.value.duplicate || !m) return;
        return this.#deliver(m.conversationId, m.seq, { kind: "message", message: m });
      }
      case "gap": {
        const g = k.value;
        // Acking to_seq moves the cursor past the hole: the app pages it
        // with history() instead.
        return this.#deliver(g.conversationId, g.toSeq, { kind: "gap", conversationId: g.conversationId, fromSeq: g.fromSeq, toSeq: g.toSeq });
      }
      case "syncComplete":
        this.#state = "live";
        return this.#emit({ kind: "synced" });
      case "receipt":
        return this.#emit({ kind: "receipt", receipt: k.value });
      case "typing":
        return this.#emit({ kind: "typing", typing: k.value });
      case "presence":
        return this.#emit({ kind: "presence", presence: k.value });
      case "error": {
        const e = k.value;
        const code = codeFromString(e.code) ?? Code.Unknown;
        return this.#emit({ kind: "error", error: new ConnectError(e.message, code) });
      }
      case "resync":
        throw new ConnectError(`parley: the server asked to reconnect: ${k.value.reason}`, Code.Unavailable);
      default:
        // Pong (the watchdog already saw it), a repeated welcome, or a frame
        // kind newer than this SDK.
        return;
    }
  }

  #deliver(conversationId: string, seq: bigint, ev: SubscriptionEvent): void {
    if (!this.#dedup.admit(conversationId, seq)) return;
    this.#emit(ev);
    this.#acks.handed(conversationId, seq);
  }

  #emit(ev: SubscriptionEvent): void {
    if (this.#state === "closed" && ev.kind !== "closed") return;
    try {
      this.#onEvent(ev);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  // finish ends the subscription once: err is why, when it was not close().
  #finish(err?: Error): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closedWith = err;
    this.#stopAuthWatch();
    this.#acks.stop();
    this.#life.abort();
    this.#emit(err ? { kind: "closed", error: err } : { kind: "closed" });
  }

  // A method, not an inline comparison: TypeScript would narrow #state across
  // the awaits that let close() change it.
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  #throwIfClosed(): void {
    if (this.#state !== "closed") return;
    if (this.#closedWith) throw this.#closedWith;
    throw new ConnectError("parley: the subscription is closed", Code.Canceled);
  }
}

function durationMs(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1_000_000);
}
