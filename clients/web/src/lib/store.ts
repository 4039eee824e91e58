// The chat state of one signed-in tab: conversations, their messages, read
// marks, typing and presence, kept current from the SDK's subscription.
//
// Messages are identified by (conversation, seq); a message this tab is still
// sending is identified by its client_msg_id until the server's copy (the
// send's result or the stream's SendAck) replaces it, so nothing shows twice.

import { markRaw, reactive } from "vue";
import {
  ConversationKind,
  MemberRole,
  MessageKind,
  ParleyAuthError,
  file as fileContent,
  image as imageContent,
  type Conversation,
  type ConversationSummary,
  type MediaUrls,
  type Message,
  type ParleyClient,
  type Subscription,
  type SubscriptionEvent,
  type User,
} from "@parley/client";
import { Code, errorCode, errorMessage } from "./errors";
import { listOfNames, tsMs } from "./format";

/** The public parts of a user the app shows. */
export interface UserInfo {
  id: string;
  username: string;
  displayName: string;
}

/** A member of a conversation. */
export interface MemberInfo {
  userId: string;
  role: MemberRole;
}

/** A message this tab sent that the server has not confirmed yet. */
export interface PendingMessage {
  clientMsgId: string;
  text: string;
  createdAt: number;
  status: "sending" | "failed";
  error?: string;
}

/** A photo or file this tab is uploading, then sending as a message. */
export interface PendingUpload {
  id: string;
  fileName: string;
  /** size is the file's size in bytes; sent is how many the server holds. */
  size: number;
  sent: number;
  /** "uploading" the bytes, then "sending" the message that names them. */
  status: "uploading" | "sending";
  abort: AbortController;
}

/** imageTypes are the content types parleyd accepts in an image message. */
const imageTypes = new Set(["image/jpeg", "image/png", "image/gif", "image/webp"]);

/** One conversation as the app knows it. */
export interface Conv {
  id: string;
  /** stub is true until the conversation list described it (a message came first). */
  stub: boolean;
  kind: ConversationKind;
  title: string;
  ownerId: string;
  createdAt: number;
  /** peerId is the other member of a direct conversation. */
  peerId: string;
  lastSeq: bigint;
  lastMessage: Message | undefined;
  /** activityAt orders the list: the newest message's time, else the creation time. */
  activityAt: number;
  unread: number;
  /** lastReadSeq is this user's read mark. */
  lastReadSeq: bigint;
  /** messages are committed messages in ascending seq order, each seq once. */
  messages: Message[];
  pending: PendingMessage[];
  /** uploads are the photos and files this tab is uploading into the conversation. */
  uploads: PendingUpload[];
  /** loaded is true once the newest page of history was fetched. */
  loaded: boolean;
  loading: boolean;
  loadingOlder: boolean;
  hasMoreBefore: boolean;
  loadError: string;
  members: Record<string, MemberInfo>;
  membersLoaded: boolean;
  /** reads are the members' read marks (user id -> last_read_seq). */
  reads: Record<string, bigint>;
  /** typing holds the members typing now. */
  typing: Record<string, true>;
  /** left is true once this user is no longer a member (removed, or left elsewhere). */
  left: boolean;
}

/** The connection as the user sees it. */
export type ConnState = "connecting" | "live" | "reconnecting" | "closed";

/** A short notice shown at the bottom of the screen. */
export interface Toast {
  id: number;
  text: string;
}

export interface ChatState {
  me: UserInfo;
  conn: ConnState;
  /** retryAt is when the next reconnect attempt happens (ms epoch), while reconnecting. */
  retryAt: number;
  listLoaded: boolean;
  listError: string;
  convs: Record<string, Conv>;
  users: Record<string, UserInfo>;
  /** presence of direct peers: user id -> online. */
  presence: Record<string, boolean>;
  /**
   * presenceKnown holds the direct peers whose presence the stream reports:
   * parleyd picks them when the stream opens, so a peer of a direct chat
   * started later is unknown (no dot) until the next connection.
   */
  presenceKnown: Record<string, true>;
  openId: string | null;
  toasts: Toast[];
  /** now ticks every few seconds, for views that depend on the time. */
  now: number;
}

// Typing: we say "typing" at most every typingRefreshMs while keys are
// pressed and "stopped" after typingIdleMs without one; others drop an
// indicator typingExpireMs after its last refresh in case the stop is lost.
const typingRefreshMs = 3_000;
const typingIdleMs = 4_000;
const typingExpireMs = 6_500;
const pageSize = 50;
/** recallWindowMs is parleyd's default recall window; the server has the last word. */
export const recallWindowMs = 2 * 60_000;
const toastMs = 5_000;

/** ChatStore owns one tab's subscription and the state derived from it. */
export class ChatStore {
  readonly state: ChatState;
  private readonly client: ParleyClient;
  private readonly onSessionEnd: (reason: string) => void;
  private sub: Subscription | undefined;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private readonly typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly ownTyping = new Map<string, { sentAt: number; idle: ReturnType<typeof setTimeout> | undefined }>();
  private listInFlight: Promise<void> | undefined;
  private listAgain = false;
  private readonly membersInFlight = new Map<string, Promise<void>>();
  private readonly membersAgain = new Set<string>();
  /** Conversations this user left here; their late notices must not bring them back. */
  private readonly gone = new Set<string>();
  private toastSeq = 0;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  private readonly onVisibility = (): void => {
    this.markOpenRead();
    // Someone looking at the page wants it live: do not wait out a backoff.
    if (document.visibilityState === "visible") this.sub?.reconnectNow();
  };
  // The network is back: retry the stream now rather than after the backoff.
  private readonly onOnline = (): void => this.sub?.reconnectNow();

  constructor(client: ParleyClient, onSessionEnd: (reason: string) => void) {
    this.client = client;
    this.onSessionEnd = onSessionEnd;
    const u = client.user;
    const me = { id: u.id, username: u.username, displayName: u.displayName || u.username };
    this.state = reactive<ChatState>({
      me,
      conn: "connecting",
      retryAt: 0,
      listLoaded: false,
      listError: "",
      convs: {},
      users: { [me.id]: me },
      presence: {},
      presenceKnown: {},
      openId: null,
      toasts: [],
      now: Date.now(),
    });
  }

  /** start opens the stream and loads the conversation list. */
  start(): void {
    this.sub = this.client.subscribe({ onEvent: (ev) => this.onEvent(ev) });
    this.ticker = setInterval(() => (this.state.now = Date.now()), 5_000);
    document.addEventListener("visibilitychange", this.onVisibility);
    window.addEventListener("focus", this.onVisibility);
    window.addEventListener("online", this.onOnline);
    void this.refreshList();
  }

  /** stop closes the stream and every timer; the store is dead afterwards. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.sub?.close();
    clearInterval(this.ticker);
    for (const t of this.timers) clearTimeout(t);
    for (const t of this.typingTimers.values()) clearTimeout(t);
    for (const t of this.ownTyping.values()) clearTimeout(t.idle);
    document.removeEventListener("visibilitychange", this.onVisibility);
    window.removeEventListener("focus", this.onVisibility);
    window.removeEventListener("online", this.onOnline);
  }

  /** logout revokes the device's session on the server, then stops. */
  async logout(): Promise<void> {
    this.stop();
    try {
      await this.client.logout();
    } catch {
      // The session is dropped locally either way.
    }
  }

  // ---------------------------------------------------------------------
  // Stream events

  private onEvent(ev: SubscriptionEvent): void {
    if (this.stopped) return;
    switch (ev.kind) {
      case "connected":
        // A new stream reports who is online afresh; what we knew may be stale.
        this.state.presence = {};
        break;
      case "synced":
        this.state.conn = "live";
        this.state.retryAt = 0;
        // What happened while we were away (reads, membership, unread counts).
        void this.refreshList().then(() => {
          this.notePresenceScope();
          this.markOpenRead();
        });
        if (this.state.openId) void this.loadMembers(this.state.openId);
        break;
      case "message":
        this.applyMessage(ev.message, true);
        break;
      case "gap":
        void this.fillGap(ev.conversationId, ev.fromSeq, ev.toSeq);
        break;
      case "receipt":
        this.applyRead(ev.receipt.conversationId, ev.receipt.userId, ev.receipt.lastReadSeq);
        break;
      case "typing":
        this.applyTyping(ev.typing.conversationId, ev.typing.userId, ev.typing.typing);
        break;
      case "presence":
        this.state.presence[ev.presence.userId] = ev.presence.online;
        this.state.presenceKnown[ev.presence.userId] = true;
        break;
      case "error":
        this.toast(errorMessage(ev.error));
        break;
      case "epochChanged":
        // The server's history was reset: nothing we hold is valid.
        this.state.convs = {};
        this.state.listLoaded = false;
        this.gone.clear();
        void this.refreshList().then(() => this.state.openId && this.open(this.state.openId));
        break;
      case "disconnected":
        this.state.conn = this.state.conn === "connecting" ? "connecting" : "reconnecting";
        this.state.retryAt = Date.now() + ev.retryInMs;
        break;
      case "closed":
        this.state.conn = "closed";
        if (ev.error instanceof ParleyAuthError) this.endSession();
        break;
    }
  }

  /** notePresenceScope records the direct peers the current stream reports presence for. */
  private notePresenceScope(): void {
    const known: Record<string, true> = {};
    for (const c of Object.values(this.state.convs)) {
      if (c.kind === ConversationKind.DIRECT && c.peerId) known[c.peerId] = true;
    }
    for (const id of Object.keys(this.state.presence)) known[id] = true;
    this.state.presenceKnown = known;
  }

  /** presenceOf is a direct peer's presence, or undefined when the stream does not report it. */
  presenceOf(userId: string): "online" | "offline" | undefined {
    if (!userId || !this.state.presenceKnown[userId]) return undefined;
    return this.state.presence[userId] ? "online" : "offline";
  }

  private endSession(): void {
    this.stop();
    this.onSessionEnd("Your session has ended. Please log in again.");
  }

  /** fail handles an error of a user action: ends the session or shows it. */
  private fail(err: unknown): void {
    if (err instanceof ParleyAuthError) {
      this.endSession();
      return;
    }
    this.toast(errorMessage(err));
  }

  toast(text: string): void {
    const id = ++this.toastSeq;
    this.state.toasts.push({ id, text });
    this.later(toastMs, () => this.dismissToast(id));
  }

  dismissToast(id: number): void {
    const i = this.state.toasts.findIndex((t) => t.id === id);
    if (i >= 0) this.state.toasts.splice(i, 1);
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  // ---------------------------------------------------------------------
  // Messages

  /**
   * applyMessage adds a committed message. live is true for the stream's
   * messages, which may be new to the user (unread, typing, membership);
   * history pages pass false.
   */
  private applyMessage(m: Message, live: boolean): void {
    const me = this.state.me.id;
    if (this.gone.has(m.conversationId)) {
      if (!(live && addsUser(m, me))) return;
      this.gone.delete(m.conversationId);
    }
    let c = this.state.convs[m.conversationId];
    if (!c) {
      c = this.state.convs[m.conversationId] = newConv(m.conversationId);
      void this.refreshList();
    }
    const fresh = insertMessage(c, m);
    const own = m.senderId === me && m.kind !== MessageKind.SYSTEM;
    if (m.senderId === me) this.dropPending(c, m.clientMsgId);
    if (m.seq > c.lastSeq || !c.lastMessage) {
      c.lastSeq = m.seq > c.lastSeq ? m.seq : c.lastSeq;
      c.lastMessage = markRaw(m);
      c.activityAt = Math.max(c.activityAt, tsMs(m.createdAt));
    }
    if (!fresh || !live) return;

    if (m.senderId === me) {
      // Sending moved our read mark to the message (the server does so).
      if (m.seq > c.lastReadSeq) c.lastReadSeq = m.seq;
      c.unread = 0;
    } else if (m.senderId) {
      // A member who sends has read everything before.
      this.bumpRead(c, m.senderId, m.seq);
      this.clearTyping(c, m.senderId);
      if (m.seq > c.lastReadSeq) {
        if (this.isVisible(c.id)) this.markRead(c);
        else c.unread++;
      }
    }
    if (own) return;
    this.applySystem(c, m);
  }

  /** applySystem reacts to a system message: recalls and membership changes. */
  private applySystem(c: Conv, m: Message): void {
    const ev = m.system?.event;
    if (!ev) return;
    const me = this.state.me.id;
    switch (ev.case) {
      case "messageRecalled": {
        const i = findSeq(c.messages, ev.value.seq);
        if (i >= 0) {
          const target = c.messages[i]!;
          if (!target.recalled) c.messages[i] = markRaw({ ...target, recalled: true, content: undefined });
        }
        break;
      }
      case "membersAdded":
        if (ev.value.userIds.includes(me)) c.left = false;
        this.reloadMembers(c);
        break;
      case "memberRemoved":
        if (ev.value.userId === me) c.left = true;
        delete c.members[ev.value.userId];
        this.reloadMembers(c);
        break;
      case "memberLeft":
        if (ev.value.userId === me) c.left = true;
        delete c.members[ev.value.userId];
        this.reloadMembers(c);
        break;
      default:
        break;
    }
  }

  private reloadMembers(c: Conv): void {
    if (c.membersLoaded || c.id === this.state.openId) void this.loadMembers(c.id);
  }

  private dropPending(c: Conv, clientMsgId: string): void {
    if (!clientMsgId) return;
    const i = c.pending.findIndex((p) => p.clientMsgId === clientMsgId);
    if (i >= 0) c.pending.splice(i, 1);
  }

  private async fillGap(conversationId: string, fromSeq: bigint, toSeq: bigint): Promise<void> {
    let anchor = fromSeq;
    try {
      while (anchor < toSeq) {
        const page = await this.client.history(conversationId, { anchorSeq: anchor, direction: "after", limit: 200 });
        for (const m of page.messages) if (m.seq <= toSeq) this.applyMessage(m, false);
        const last = page.messages[page.messages.length - 1];
        if (!page.hasMore || !last || last.seq <= anchor) break;
        anchor = last.seq;
      }
    } catch (err) {
      if (err instanceof ParleyAuthError) this.endSession();
      // Otherwise the conversation's next load fetches it again.
    }
  }

  // ---------------------------------------------------------------------
  // Reads, typing

  private bumpRead(c: Conv, userId: string, seq: bigint): void {
    const cur = c.reads[userId];
    if (cur === undefined || seq > cur) c.reads[userId] = seq;
  }

  private applyRead(conversationId: string, userId: string, seq: bigint): void {
    const c = this.state.convs[conversationId];
    if (!c) return;
    this.bumpRead(c, userId, seq);
    if (userId !== this.state.me.id || seq <= c.lastReadSeq) return;
    // Read on another of our devices.
    c.lastReadSeq = seq;
    c.unread = seq >= c.lastSeq ? 0 : Math.min(c.unread, this.unreadAfter(c, seq));
  }

  /** unreadAfter counts the others' messages after seq that this tab holds. */
  private unreadAfter(c: Conv, seq: bigint): number {
    let n = 0;
    for (let i = c.messages.length - 1; i >= 0 && c.messages[i]!.seq > seq; i--) {
      if (c.messages[i]!.senderId !== this.state.me.id) n++;
    }
    return n;
  }

  private isVisible(conversationId: string): boolean {
    return this.state.openId === conversationId && document.visibilityState === "visible";
  }

  /** markRead moves our read mark to the newest message of c. */
  private markRead(c: Conv): void {
    const seq = c.lastSeq;
    if (seq === 0n || seq <= c.lastReadSeq || c.left) return;
    c.lastReadSeq = seq;
    c.unread = 0;
    this.bumpRead(c, this.state.me.id, seq);
    // A failure (server away) is repaired when the stream is back: the list
    // refresh restores the server's mark and markOpenRead sends it again.
    this.sub?.markRead(c.id, seq).catch((err: unknown) => {
      if (err instanceof ParleyAuthError) this.endSession();
    });
  }

  /** markOpenRead marks the open conversation read when the page is visible. */
  markOpenRead(): void {
    const id = this.state.openId;
    const c = id ? this.state.convs[id] : undefined;
    if (c && this.isVisible(c.id)) this.markRead(c);
  }

  private applyTyping(conversationId: string, userId: string, typing: boolean): void {
    const c = this.state.convs[conversationId];
    if (!c || userId === this.state.me.id) return;
    const key = `${conversationId}/${userId}`;
    clearTimeout(this.typingTimers.get(key));
    this.typingTimers.delete(key);
    if (!typing) {
      delete c.typing[userId];
      return;
    }
    c.typing[userId] = true;
    this.typingTimers.set(
      key,
      setTimeout(() => {
        this.typingTimers.delete(key);
        delete c.typing[userId];
      }, typingExpireMs),
    );
  }

  private clearTyping(c: Conv, userId: string): void {
    if (c.typing[userId]) this.applyTyping(c.id, userId, false);
  }

  /** typingInput tells the others we type in a conversation, throttled. */
  typingInput(conversationId: string): void {
    const now = Date.now();
    let t = this.ownTyping.get(conversationId);
    if (!t) {
      t = { sentAt: 0, idle: undefined };
      this.ownTyping.set(conversationId, t);
    }
    if (now - t.sentAt >= typingRefreshMs) {
      t.sentAt = now;
      this.sub?.setTyping(conversationId, true).catch(() => {});
    }
    clearTimeout(t.idle);
    t.idle = setTimeout(() => this.typingStop(conversationId), typingIdleMs);
  }

  /** typingStop tells the others we stopped typing (if we said we were). */
  typingStop(conversationId: string): void {
    const t = this.ownTyping.get(conversationId);
    if (!t) return;
    clearTimeout(t.idle);
    this.ownTyping.delete(conversationId);
    this.sub?.setTyping(conversationId, false).catch(() => {});
  }

  // ---------------------------------------------------------------------
  // Conversation list and members

  /** refreshList fetches the conversation list; concurrent calls share one fetch plus one more. */
  refreshList(): Promise<void> {
    if (this.listInFlight) {
      this.listAgain = true;
      return this.listInFlight;
    }
    this.listInFlight = (async () => {
      do {
        this.listAgain = false;
        await this.fetchList();
      } while (this.listAgain && !this.stopped);
    })().finally(() => (this.listInFlight = undefined));
    return this.listInFlight;
  }

  private async fetchList(): Promise<void> {
    const known = new Set(Object.keys(this.state.convs));
    let list: ConversationSummary[];
    try {
      list = (await this.client.conversations.listConversations({})).conversations;
    } catch (err) {
      if (err instanceof ParleyAuthError) this.endSession();
      else if (!this.state.listLoaded) this.state.listError = errorMessage(err);
      return;
    }
    if (this.stopped) return;
    this.state.listError = "";
    const seen = new Set<string>();
    for (const s of list) {
      const conv = s.conversation;
      if (!conv) continue;
      seen.add(conv.id);
      this.gone.delete(conv.id);
      const c = this.upsertConv(conv);
      if (s.peer) {
        this.rememberUser(s.peer);
        c.peerId = s.peer.id;
      }
      // Messages this tab got after the server counted stay unread on top.
      c.unread = Number(s.unreadCount) + this.unreadAfter(c, maxBig(conv.lastSeq, s.lastReadSeq));
      c.lastReadSeq = s.lastReadSeq;
      this.bumpRead(c, this.state.me.id, s.lastReadSeq);
      const lm = s.lastMessage;
      if (lm && (!c.lastMessage || lm.seq >= c.lastMessage.seq)) {
        c.lastMessage = markRaw(lm);
        c.activityAt = Math.max(c.activityAt, tsMs(lm.createdAt));
      }
      c.left = false;
      if (c.kind === ConversationKind.GROUP && !c.membersLoaded) void this.loadMembers(c.id);
    }
    // Conversations we are no longer in.
    for (const id of known) {
      if (seen.has(id)) continue;
      const c = this.state.convs[id];
      if (!c) continue;
      if (id === this.state.openId) c.left = true;
      else delete this.state.convs[id];
    }
    this.state.listLoaded = true;
    // The server's count may predate a read of the open conversation.
    this.markOpenRead();
  }

  /** upsertConv records a conversation's description. */
  private upsertConv(conv: Conversation): Conv {
    let c = this.state.convs[conv.id];
    if (!c) c = this.state.convs[conv.id] = newConv(conv.id);
    c.stub = false;
    c.kind = conv.kind;
    c.title = conv.title;
    c.ownerId = conv.ownerId;
    c.createdAt = tsMs(conv.createdAt);
    if (conv.lastSeq > c.lastSeq) c.lastSeq = conv.lastSeq;
    c.activityAt = Math.max(c.activityAt, c.createdAt);
    return c;
  }

  private rememberUser(u: User | UserInfo): UserInfo {
    const info = { id: u.id, username: u.username, displayName: u.displayName || u.username };
    this.state.users[u.id] = info;
    return info;
  }

  /** loadMembers fetches a conversation's members and their read marks. */
  loadMembers(conversationId: string): Promise<void> {
    const running = this.membersInFlight.get(conversationId);
    if (running) {
      this.membersAgain.add(conversationId);
      return running;
    }
    const p = (async () => {
      do {
        this.membersAgain.delete(conversationId);
        await this.fetchMembers(conversationId);
      } while (this.membersAgain.has(conversationId) && !this.stopped);
    })().finally(() => this.membersInFlight.delete(conversationId));
    this.membersInFlight.set(conversationId, p);
    return p;
  }

  private async fetchMembers(conversationId: string): Promise<void> {
    try {
      const res = await this.client.conversations.getConversation({ conversationId });
      if (!res.conversation || this.stopped) return;
      const c = this.upsertConv(res.conversation);
      const members: Record<string, MemberInfo> = {};
      for (const m of res.members) {
        if (!m.user) continue;
        this.rememberUser(m.user);
        members[m.user.id] = { userId: m.user.id, role: m.role };
        this.bumpRead(c, m.user.id, m.lastReadSeq);
        if (c.kind === ConversationKind.DIRECT && m.user.id !== this.state.me.id) c.peerId = m.user.id;
      }
      c.members = members;
      c.membersLoaded = true;
      c.left = !members[this.state.me.id];
    } catch (err) {
      if (err instanceof ParleyAuthError) this.endSession();
      else if (errorCode(err) === Code.NotFound) {
        const c = this.state.convs[conversationId];
        if (c) c.left = true;
      }
    }
  }

  // ---------------------------------------------------------------------
  // Opening and paging

  /** open shows a conversation (null: none) and loads what it needs. */
  open(conversationId: string | null): void {
    if (this.state.openId && this.state.openId !== conversationId) this.typingStop(this.state.openId);
    this.state.openId = conversationId;
    if (!conversationId) return;
    const c = this.state.convs[conversationId];
    if (!c) return;
    void this.loadLatest(c);
    void this.loadMembers(c.id);
    this.markOpenRead();
  }

  private async loadLatest(c: Conv): Promise<void> {
    if (c.loaded || c.loading) return;
    c.loading = true;
    c.loadError = "";
    try {
      const page = await this.client.history(c.id, { direction: "before", limit: pageSize });
      for (const m of page.messages) this.applyMessage(m, false);
      c.hasMoreBefore = page.hasMore;
      c.loaded = true;
      this.markOpenRead();
    } catch (err) {
      if (err instanceof ParleyAuthError) this.endSession();
      else c.loadError = errorMessage(err);
    } finally {
      c.loading = false;
    }
  }

  /** retryLoad fetches a conversation's newest page again after a failure. */
  retryLoad(conversationId: string): void {
    const c = this.state.convs[conversationId];
    if (c) void this.loadLatest(c);
  }

  /** loadOlder fetches the page before the oldest message held; resolves true when it added any. */
  async loadOlder(conversationId: string): Promise<boolean> {
    const c = this.state.convs[conversationId];
    if (!c || !c.loaded || !c.hasMoreBefore || c.loadingOlder) return false;
    const oldest = c.messages[0];
    if (!oldest) return false;
    c.loadingOlder = true;
    try {
      const page = await this.client.history(c.id, { anchorSeq: oldest.seq, direction: "before", limit: pageSize });
      for (const m of page.messages) this.applyMessage(m, false);
      c.hasMoreBefore = page.hasMore;
      return page.messages.length > 0;
    } catch (err) {
      this.fail(err);
      return false;
    } finally {
      c.loadingOlder = false;
    }
  }

  // ---------------------------------------------------------------------
  // Sending, recalling

  /** send shows text at once as pending and sends it; the server's copy replaces it. */
  send(conversationId: string, text: string): void {
    const c = this.state.convs[conversationId];
    if (!c || text.trim() === "") return;
    this.typingStop(conversationId);
    const p: PendingMessage = { clientMsgId: newId(), text, createdAt: Date.now(), status: "sending" };
    c.pending.push(p);
    this.transmit(c, p);
  }

  /** retry sends a failed message again with the same client_msg_id (never twice on the server). */
  retry(conversationId: string, clientMsgId: string): void {
    const c = this.state.convs[conversationId];
    const p = c?.pending.find((x) => x.clientMsgId === clientMsgId);
    if (!c || !p) return;
    p.status = "sending";
    p.error = undefined;
    this.transmit(c, p);
  }

  /** discard drops a failed message. */
  discard(conversationId: string, clientMsgId: string): void {
    const c = this.state.convs[conversationId];
    if (c) this.dropPending(c, clientMsgId);
  }

  private transmit(c: Conv, p: PendingMessage): void {
    if (!this.sub) return;
    this.sub.send(c.id, p.text, { clientMsgId: p.clientMsgId }).then(
      (m) => this.applyMessage(m, true),
      (err: unknown) => {
        if (err instanceof ParleyAuthError) return this.endSession();
        const cur = c.pending.find((x) => x.clientMsgId === p.clientMsgId);
        if (!cur) return;
        cur.status = "failed";
        cur.error = errorMessage(err);
      },
    );
  }

  /**
   * sendFile uploads a photo or file (showing its progress in c.uploads),
   * then sends it as an image message when the server found an image
   * (JPEG, PNG, GIF, WebP) and as a file message otherwise, with caption.
   * A failure (the server's words, e.g. a file over its size limit) becomes
   * a toast; a cancelled upload just disappears.
   */
  async sendFile(conversationId: string, f: Blob, fileName: string, caption = ""): Promise<void> {
    const c = this.state.convs[conversationId];
    if (!c || !this.sub) return;
    const sub = this.sub;
    const up: PendingUpload = { id: newId(), fileName, size: f.size, sent: 0, status: "uploading", abort: markRaw(new AbortController()) };
    c.uploads.push(up);
    // The reactive copy: writes through it update the view.
    const live = c.uploads[c.uploads.length - 1]!;
    try {
      const info = await this.client.upload(f, fileName, {
        signal: up.abort.signal,
        onProgress: (sent) => {
          live.sent = sent;
        },
      });
      if (up.abort.signal.aborted) return;
      live.status = "sending";
      const content = imageTypes.has(info.contentType) ? imageContent(info.mediaId, caption) : fileContent(info.mediaId, caption);
      this.applyMessage(await sub.send(c.id, content), true);
    } catch (err) {
      if (err instanceof ParleyAuthError) return this.endSession();
      if (!up.abort.signal.aborted) this.toast(`Couldn't send ${fileName}: ${errorMessage(err)}`);
    } finally {
      const i = c.uploads.findIndex((x) => x.id === up.id);
      if (i >= 0) c.uploads.splice(i, 1);
    }
  }

  /** cancelUpload stops an upload that is still sending bytes. */
  cancelUpload(conversationId: string, id: string): void {
    const up = this.state.convs[conversationId]?.uploads.find((x) => x.id === id);
    if (up?.status === "uploading") up.abort.abort();
  }

  /** recall withdraws one of our messages; everyone sees the server's notice. */
  async recall(conversationId: string, seq: bigint): Promise<void> {
    if (!this.sub) return;
    try {
      await this.sub.recall(conversationId, seq);
    } catch (err) {
      this.fail(err);
    }
  }

  // ---------------------------------------------------------------------
  // Starting chats, groups, members

  /** lookup finds a user by username, with an error a person understands. */
  async lookup(username: string): Promise<UserInfo> {
    const name = username.trim().replace(/^@/, "").toLowerCase();
    if (!name) throw new Error("Enter a username.");
    try {
      return this.rememberUser(await this.client.lookupUser(name));
    } catch (err) {
      if (errorCode(err) === Code.NotFound || errorCode(err) === Code.InvalidArgument) {
        throw new Error(`There is no user named “${name}”.`);
      }
      throw new Error(errorMessage(err));
    }
  }

  /** startDirect opens (creating on first use) the direct chat with a user; returns its id. */
  async startDirect(username: string): Promise<string> {
    const peer = await this.lookup(username);
    if (peer.id === this.state.me.id) throw new Error("That's you. Pick someone else to chat with.");
    try {
      const res = await this.client.conversations.createDirect({ peer: { case: "userId", value: peer.id } });
      if (!res.conversation) throw new Error("The server sent no conversation.");
      this.gone.delete(res.conversation.id);
      const c = this.upsertConv(res.conversation);
      c.peerId = peer.id;
      void this.refreshList();
      return c.id;
    } catch (err) {
      throw new Error(errorMessage(err));
    }
  }

  /** createGroup creates a group with the named users; returns its id. */
  async createGroup(title: string, usernames: string[]): Promise<string> {
    const t = title.trim();
    if (!t) throw new Error("Give the group a name.");
    const users = await Promise.all(usernames.map((u) => this.lookup(u)));
    const ids = [...new Set(users.map((u) => u.id).filter((id) => id !== this.state.me.id))];
    try {
      const res = await this.client.conversations.createGroup({ title: t, memberIds: ids });
      if (!res.conversation) throw new Error("The server sent no conversation.");
      const c = this.upsertConv(res.conversation);
      void this.refreshList();
      void this.loadMembers(c.id);
      return c.id;
    } catch (err) {
      throw new Error(errorMessage(err));
    }
  }

  /** addMembers adds users by username to a group. */
  async addMembers(conversationId: string, usernames: string[]): Promise<void> {
    const users = await Promise.all(usernames.map((u) => this.lookup(u)));
    try {
      await this.client.conversations.addMembers({ conversationId, userIds: [...new Set(users.map((u) => u.id))] });
    } catch (err) {
      throw new Error(errorMessage(err));
    }
    await this.loadMembers(conversationId);
  }

  /** removeMember removes a user from a group (owner and admins). */
  async removeMember(conversationId: string, userId: string): Promise<void> {
    try {
      await this.client.conversations.removeMember({ conversationId, userId });
      await this.loadMembers(conversationId);
    } catch (err) {
      this.fail(err);
    }
  }

  /** leave takes this user out of a group; resolves true when it did. */
  async leave(conversationId: string): Promise<boolean> {
    try {
      await this.client.conversations.leave({ conversationId });
    } catch (err) {
      this.fail(err);
      return false;
    }
    this.gone.add(conversationId);
    if (this.state.openId === conversationId) this.state.openId = null;
    delete this.state.convs[conversationId];
    return true;
  }

  // ---------------------------------------------------------------------
  // Views of the state

  /** name is how to show a user: "You", their display name, or their username. */
  name(userId: string): string {
    if (userId === this.state.me.id) return "You";
    const u = this.state.users[userId];
    return u ? u.displayName || u.username : "Someone";
  }

  /** title of a conversation: the group's title or the peer's name. */
  title(c: Conv): string {
    if (c.kind === ConversationKind.GROUP) return c.title || "Group";
    const peer = this.state.users[c.peerId];
    return peer ? peer.displayName || peer.username : "Direct chat";
  }

  /** role of a user in a conversation. */
  role(c: Conv, userId: string): MemberRole {
    return c.members[userId]?.role ?? MemberRole.UNSPECIFIED;
  }

  /** systemText describes a system message in a sentence. */
  systemText(m: Message): string {
    const ev = m.system?.event;
    if (!ev) return "";
    const names = (ids: string[]): string => listOfNames(ids.map((id) => (id === this.state.me.id ? "you" : this.name(id))));
    switch (ev.case) {
      case "groupCreated":
        return `${this.name(ev.value.ownerId)} created the group “${ev.value.title}”`;
      case "membersAdded":
        return `${this.name(ev.value.actorId)} added ${names(ev.value.userIds)}`;
      case "memberRemoved":
        return `${this.name(ev.value.actorId)} removed ${names([ev.value.userId])}`;
      case "memberLeft":
        return `${this.name(ev.value.userId)} left`;
      case "messageRecalled":
        return `${this.name(ev.value.actorId)} recalled a message`;
      default:
        return "";
    }
  }

  /** preview is the conversation list's one-line summary of the last message. */
  preview(c: Conv): string {
    const m = c.lastMessage;
    if (!m) return c.kind === ConversationKind.GROUP ? "No messages yet" : "Say hello 👋";
    if (m.kind === MessageKind.SYSTEM) return this.systemText(m);
    const body = m.recalled ? "Message recalled" : previewText(m);
    if (m.senderId === this.state.me.id) return `You: ${body}`;
    if (c.kind === ConversationKind.GROUP) return `${this.name(m.senderId)}: ${body}`;
    return body;
  }

  /**
   * mediaUrls are the signed URLs of a media shown in a message (cached by
   * the SDK until shortly before they expire); refresh asks for new ones,
   * e.g. after an image failed to load. Rejects with the SDK's error.
   */
  mediaUrls(mediaId: string, refresh = false): Promise<MediaUrls> {
    return this.client.mediaUrls(mediaId, { refresh });
  }

  /** typingText is "alice is typing…" for the members typing in c, or "". */
  typingText(c: Conv): string {
    const ids = Object.keys(c.typing);
    if (ids.length === 0) return "";
    if (ids.length > 3) return "Several people are typing…";
    const who = listOfNames(ids.map((id) => this.name(id)));
    return `${who} ${ids.length === 1 ? "is" : "are"} typing…`;
  }
}

// -------------------------------------------------------------------------
// Helpers

function newConv(id: string): Conv {
  return {
    id,
    stub: true,
    kind: ConversationKind.UNSPECIFIED,
    title: "",
    ownerId: "",
    createdAt: 0,
    peerId: "",
    lastSeq: 0n,
    lastMessage: undefined,
    activityAt: 0,
    unread: 0,
    lastReadSeq: 0n,
    messages: [],
    pending: [],
    uploads: [],
    loaded: false,
    loading: false,
    loadingOlder: false,
    hasMoreBefore: false,
    loadError: "",
    members: {},
    membersLoaded: false,
    reads: {},
    typing: {},
    left: false,
  };
}

/** findSeq is the index of seq in msgs (ascending), or -1. */
function findSeq(msgs: Message[], seq: bigint): number {
  const i = lowerBound(msgs, seq);
  return i < msgs.length && msgs[i]!.seq === seq ? i : -1;
}

/** lowerBound is the first index whose seq is >= seq. */
function lowerBound(msgs: Message[], seq: bigint): number {
  let lo = 0;
  let hi = msgs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (msgs[mid]!.seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** insertMessage puts m in its place; true when its seq was new. A recalled copy replaces a live one. */
function insertMessage(c: Conv, m: Message): boolean {
  const msgs = c.messages;
  const i = lowerBound(msgs, m.seq);
  if (i < msgs.length && msgs[i]!.seq === m.seq) {
    if (m.recalled && !msgs[i]!.recalled) msgs[i] = markRaw(m);
    return false;
  }
  if (i === msgs.length) msgs.push(markRaw(m));
  else msgs.splice(i, 0, markRaw(m));
  return true;
}

function addsUser(m: Message, userId: string): boolean {
  const ev = m.system?.event;
  return ev?.case === "membersAdded" && ev.value.userIds.includes(userId);
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** previewText is a message's text, or "📷 Photo" / "📎 <file name>" for media. */
export function previewText(m: Message): string {
  const body = m.content?.body;
  switch (body?.case) {
    case "image":
      return "📷 Photo";
    case "file":
      return `📎 ${body.value.fileName || "File"}`;
    default:
      return messageText(m);
  }
}

/** messageText is a message's text, or a label for media. */
export function messageText(m: Message): string {
  const body = m.content?.body;
  switch (body?.case) {
    case "text":
      return body.value;
    case "image":
      return body.value.caption || "📷 Photo";
    case "file":
      return body.value.caption || `📎 ${body.value.fileName || "File"}`;
    default:
      return "";
  }
}

/** newId is a client_msg_id; crypto.randomUUID needs a secure context, which a LAN address is not. */
function newId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
