import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { AuthService } from "./gen/parley/v1/auth_pb.js";
import { ChatService, HistoryDirection } from "./gen/parley/v1/chat_pb.js";
import type { Message, User } from "./gen/parley/v1/common_pb.js";
import { ConversationService } from "./gen/parley/v1/conversation_pb.js";
import { withBearer } from "./bearer.js";
import { ParleyAuthError } from "./errors.js";
import { Subscription, type SubscribeOptions } from "./subscription.js";
import { TokenManager, tokenFields, userInfo, type Credentials, type UserInfo } from "./tokens.js";

/** Options shared by {@link ParleyClient.register}, {@link ParleyClient.login} and {@link ParleyClient.resume}. */
export interface ClientOptions {
  /** Labels the device's session ("laptop", "firefox"); register and login only. */
  deviceName?: string;
  /**
   * Called with the new credentials after register/login and after every
   * token rotation, so the app can persist them: each refresh token works
   * once, so a stale copy cannot resume the session.
   */
  onCredentials?: (c: Credentials) => void;
  /**
   * Refresh before a call when the access token expires within this (at
   * most half the token's lifetime, when known). Default 30 000 ms.
   */
  refreshSkewMs?: number;
}

/** Options of {@link ParleyClient.history}. */
export interface HistoryOptions {
  /** Exclusive anchor. With "before", 0n (the default) means "from the newest". */
  anchorSeq?: bigint;
  /** "before" (default): seqs below the anchor; "after": seqs above it. Pages are ascending either way. */
  direction?: "before" | "after";
  /** 1..200; default (0) is the server's 50. */
  limit?: number;
}

const defaultRefreshSkewMs = 30_000;

/**
 * ParleyClient is one device's signed-in session over a Transport (see
 * createWebTransport and createNodeTransport). Every call carries the access
 * token; the client refreshes it shortly before it expires and, once more,
 * when the server answers a call with an expired token (that call is then
 * retried once). Refreshes are single-flight: each refresh token works once.
 *
 * When the server refuses the refresh token, or the access token for a reason
 * a refresh cannot fix, or after logout(), the session is over: every call
 * rejects with {@link ParleyAuthError} and subscriptions close with it, so
 * the app returns to its login screen.
 */
export class ParleyClient {
  /** ConversationService client with the bearer token attached. */
  readonly conversations: Client<typeof ConversationService>;
  /** ChatService client with the bearer token attached. */
  readonly chat: Client<typeof ChatService>;
  readonly #tokens: TokenManager;
  readonly #auth: Client<typeof AuthService>;

  private constructor(transport: Transport, creds: Credentials, opts: ClientOptions, fresh: boolean) {
    const plain = createClient(AuthService, transport);
    this.#tokens = new TokenManager(plain, creds, opts.refreshSkewMs ?? defaultRefreshSkewMs, opts.onCredentials, fresh);
    const authed = withBearer(transport, this.#tokens);
    this.#auth = createClient(AuthService, authed);
    this.conversations = createClient(ConversationService, authed);
    this.chat = createClient(ChatService, authed);
  }

  /**
   * Creates an account and signs its first device in. Rejects with the
   * server's ConnectError: AlreadyExists when the username is taken,
   * InvalidArgument naming the field for a bad username or password.
   */
  static async register(
    transport: Transport,
    username: string,
    password: string,
    opts: ClientOptions & { displayName?: string } = {},
  ): Promise<ParleyClient> {
    const res = await createClient(AuthService, transport).register({
      username,
      password,
      displayName: opts.displayName ?? "",
      deviceName: opts.deviceName ?? "",
    });
    return ParleyClient.#signedIn(transport, res.user, res.deviceId, res.tokens, opts);
  }

  /** Signs a new device in. Rejects with Unauthenticated for a wrong username or password alike. */
  static async login(transport: Transport, username: string, password: string, opts: ClientOptions = {}): Promise<ParleyClient> {
    const res = await createClient(AuthService, transport).login({ username, password, deviceName: opts.deviceName ?? "" });
    return ParleyClient.#signedIn(transport, res.user, res.deviceId, res.tokens, opts);
  }

  /**
   * Continues a session from saved credentials, without a call. If they are
   * stale (the refresh token was rotated since, or revoked), the first call
   * rejects with ParleyAuthError.
   */
  static resume(transport: Transport, creds: Credentials, opts: ClientOptions = {}): ParleyClient {
    return new ParleyClient(transport, creds, opts, false);
  }

  static #signedIn(
    transport: Transport,
    user: User | undefined,
    deviceId: string,
    tokens: Parameters<typeof tokenFields>[0] | undefined,
    opts: ClientOptions,
  ): ParleyClient {
    if (!tokens) throw new Error("parley: the server signed in without sending tokens");
    const creds: Credentials = { user: userInfo(user), deviceId, ...tokenFields(tokens) };
    const client = new ParleyClient(transport, creds, opts, true);
    opts.onCredentials?.(client.credentials());
    return client;
  }

  /** The signed-in user's id. */
  get userId(): string {
    return this.#tokens.credentials().user.id;
  }

  /** This device's id. */
  get deviceId(): string {
    return this.#tokens.credentials().deviceId;
  }

  /** The signed-in user as of sign-in (id, username, displayName). */
  get user(): UserInfo {
    return this.#tokens.credentials().user;
  }

  /** Returns a copy of the current credentials (JSON-serialisable; holds secrets). */
  credentials(): Credentials {
    return this.#tokens.credentials();
  }

  /**
   * Rotates the tokens now (joining a refresh already running). Rejects with
   * ParleyAuthError if the server refuses the refresh token, or with the
   * ConnectError of a failed call (the session then lives on).
   */
  refresh(): Promise<void> {
    return this.#tokens.refresh();
  }

  /**
   * Signs this device out on the server, then ends the session locally: later
   * calls reject with ParleyAuthError and subscriptions close. The local end
   * happens even when the call fails (which it reports).
   */
  async logout(): Promise<void> {
    try {
      await this.#auth.logout({});
    } finally {
      this.#tokens.end(new ParleyAuthError("parley: logged out"));
    }
  }

  /** Finds a user by username. Rejects with NotFound if there is none. */
  async lookupUser(username: string): Promise<User> {
    const res = await this.conversations.lookupUser({ username });
    if (!res.user) throw new Error(`parley: LookupUser ${username}: the server sent no user`);
    return res.user;
  }

  /**
   * Pages a conversation's messages by seq, never from before this user
   * joined. Messages come in ascending seq order; hasMore says more lie
   * beyond the page in its direction (anchor the next page at its edge).
   */
  async history(conversationId: string, opts: HistoryOptions = {}): Promise<{ messages: Message[]; hasMore: boolean }> {
    const res = await this.chat.getHistory({
      conversationId,
      anchorSeq: opts.anchorSeq ?? 0n,
      direction: opts.direction === "after" ? HistoryDirection.AFTER : HistoryDirection.BEFORE,
      limit: opts.limit ?? 0,
    });
    return { messages: res.messages, hasMore: res.hasMore };
  }

  /** Opens this device's live feed; see {@link Subscription}. It starts connecting at once. */
  subscribe(opts: SubscribeOptions = { onEvent: () => {} }): Subscription {
    return new Subscription({ chat: this.chat, tokens: this.#tokens }, opts);
  }
}
