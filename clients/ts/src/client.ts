import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { AuthService } from "./gen/parley/v1/auth_pb.js";
import { ChatService, HistoryDirection } from "./gen/parley/v1/chat_pb.js";
import type { Message, User } from "./gen/parley/v1/common_pb.js";
import { ConversationService } from "./gen/parley/v1/conversation_pb.js";
import { MediaService, type MediaInfo } from "./gen/parley/v1/media_pb.js";
import { withBearer } from "./bearer.js";
import { newClientMsgId } from "./content.js";
import { endpointOf } from "./endpoint.js";
import {
  UrlCache,
  bytesOf,
  download,
  getMediaUrls,
  sha256,
  uploadParts,
  type DownloadOptions,
  type MediaUrls,
  type UploadOptions,
} from "./media.js";
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
  /**
   * The server's address, which the relative URLs of
   * {@link ParleyClient.mediaUrls} are resolved against. Only needed with a
   * transport not made by createWebTransport or createNodeTransport (those
   * remember theirs); in a browser the page's origin is the fallback.
   */
  baseUrl?: string;
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
  /**
   * MediaService client with the bearer token attached. Its Upload (a
   * client stream) works over Node's HTTP/2 transports only; {@link upload}
   * uses UploadPart, which works everywhere.
   */
  readonly media: Client<typeof MediaService>;
  readonly #tokens: TokenManager;
  readonly #auth: Client<typeof AuthService>;
  readonly #baseUrl: string | undefined;
  readonly #urls: UrlCache;

  private constructor(transport: Transport, creds: Credentials, opts: ClientOptions, fresh: boolean) {
    const plain = createClient(AuthService, transport);
    this.#tokens = new TokenManager(plain, creds, opts.refreshSkewMs ?? defaultRefreshSkewMs, opts.onCredentials, fresh);
    const authed = withBearer(transport, this.#tokens);
    this.#auth = createClient(AuthService, authed);
    this.conversations = createClient(ConversationService, authed);
    this.chat = createClient(ChatService, authed);
    this.media = createClient(MediaService, authed);
    const endpoint = endpointOf(transport);
    this.#baseUrl = opts.baseUrl ?? endpoint?.baseUrl ?? globalThis.location?.origin;
    this.#urls = new UrlCache((id) => {
      if (this.#baseUrl === undefined) {
        return Promise.reject(new Error("parley: mediaUrls: the server's address is unknown for this transport; pass ClientOptions.baseUrl"));
      }
      return getMediaUrls(this.media, this.#baseUrl, id);
    });
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

  /**
   * Returns short-lived signed URLs of a media (and its description): a
   * plain GET fetches the bytes without a token, so they suit an <img src>
   * or a download link. They are resolved against the server's address (see
   * {@link ClientOptions.baseUrl}) and cached per media until shortly before
   * they expire (30 s, or half their lifetime if shorter; the server's
   * default lifetime is 5 minutes), so calling this for every render is
   * cheap. refresh forces new URLs, e.g. after an <img> failed to load.
   * Rejects with NotFound when this user may not read the media (it is
   * neither theirs nor in a conversation of theirs, or was recalled).
   */
  mediaUrls(mediaId: string, opts: { refresh?: boolean } = {}): Promise<MediaUrls> {
    return this.#urls.get(mediaId, opts.refresh ?? false);
  }

  /**
   * Downloads a media's bytes (or its thumbnail's) over the Download stream,
   * in Node and browsers alike, and returns them whole. Rejects with
   * NotFound like {@link mediaUrls} (and for a thumbnail the media has not),
   * or when fewer bytes arrived than the server announced.
   */
  async download(mediaId: string, opts: DownloadOptions = {}): Promise<Uint8Array> {
    try {
      return await download(this.media, mediaId, opts);
    } catch (err) {
      throw this.#tokens.classify(err);
    }
  }

  /**
   * Uploads a file and returns its MediaInfo; send it with
   * `sub.send(conv, image(info.mediaId))` (or `file(...)`). The server
   * detects the type from the bytes, and makes a thumbnail of an image.
   *
   * Works on every transport, browsers' fetch included: the bytes go up in
   * chunks of 1 MiB, one UploadPart call each. A chunk that fails for a
   * transient reason (Unavailable, DeadlineExceeded, a broken connection) is
   * sent again after a backoff; when the server rejects a chunk's offset,
   * the client asks GetUpload where to continue. onProgress reports the
   * bytes the server acknowledged.
   *
   * The whole file is held in memory to hash it (SHA-256 with
   * crypto.subtle, which browsers offer in secure contexts only: https or
   * localhost), so keep files to the server's limit (100 MiB by default).
   * Rejects with the server's ConnectError: InvalidArgument for an empty
   * file, a checksum mismatch or a file over the server's size limit (the
   * message says which), and so on; Canceled when opts.signal aborts. An
   * interrupted upload is resumed by calling again with the same
   * {@link UploadOptions.uploadId}.
   */
  async upload(data: Uint8Array | Blob, fileName: string, opts: UploadOptions = {}): Promise<MediaInfo> {
    const bytes = await bytesOf(data);
    const digest = await sha256(bytes);
    const uploadId = opts.uploadId ?? newClientMsgId();
    try {
      return await uploadParts(this.media, bytes, { uploadId, fileName, sha256: digest }, opts);
    } catch (err) {
      throw this.#tokens.classify(err);
    }
  }

  /** Opens this device's live feed; see {@link Subscription}. It starts connecting at once. */
  subscribe(opts: SubscribeOptions = { onEvent: () => {} }): Subscription {
    return new Subscription({ chat: this.chat, tokens: this.#tokens }, opts);
  }
}
