import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { AuthService, Tokens } from "./gen/parley/v1/auth_pb.js";
import type { User } from "./gen/parley/v1/common_pb.js";
import { ParleyAuthError, isAccessExpired } from "./errors.js";

/** The signed-in user as kept in {@link Credentials}: plain strings, so it survives JSON. */
export interface UserInfo {
  /** Server-assigned, immutable user id. */
  id: string;
  /** Unique login name. */
  username: string;
  /** What clients show. */
  displayName: string;
}

/**
 * What a device keeps to stay signed in. Plain JSON (times are milliseconds
 * since the epoch), so apps can persist it, e.g. in sessionStorage. It holds
 * secrets: never log it. The refresh token works once; persist the newest
 * credentials after every rotation ({@link ClientOptions.onCredentials}), or a
 * later resume() presents a spent token and the server revokes the device.
 */
export interface Credentials {
  user: UserInfo;
  deviceId: string;
  accessToken: string;
  /** Access token expiry, ms since the epoch (0 if the server gave none). */
  accessExpiresAt: number;
  refreshToken: string;
  /** Refresh token expiry, ms since the epoch (0 if the server gave none). */
  refreshExpiresAt: number;
}

// A refresh runs detached from any caller's signal: abandoning one the server
// may already have committed would leave the client holding a spent refresh
// token, and presenting it again revokes the device. This bounds it instead.
const refreshTimeoutMs = 30_000;

/**
 * TokenManager holds one device's credentials, refreshes them one refresh at
 * a time, and ends the session for good once the server refuses them.
 */
export class TokenManager {
  readonly #auth: Client<typeof AuthService>;
  readonly #skewMs: number;
  readonly #onCredentials: ((c: Credentials) => void) | undefined;
  readonly #onEnd = new Set<(err: ParleyAuthError) => void>();
  #creds: Credentials;
  // How long the current access token lived when it was issued; undefined
  // for resumed credentials, whose issue time is unknown.
  #lifetimeMs: number | undefined;
  #ended: ParleyAuthError | undefined;
  #refreshing: Promise<void> | undefined;

  /**
   * @param auth an AuthService client without the bearer token (Refresh needs none).
   * @param creds the device's current credentials.
   * @param skewMs refresh before a call when the access token expires within this.
   * @param onCredentials told about every new set of credentials.
   * @param fresh creds were issued just now (register, login), not resumed.
   */
  constructor(auth: Client<typeof AuthService>, creds: Credentials, skewMs: number, onCredentials?: (c: Credentials) => void, fresh = false) {
    this.#auth = auth;
    this.#creds = { ...creds, user: { ...creds.user } };
    if (fresh) this.#lifetimeMs = creds.accessExpiresAt - Date.now();
    this.#skewMs = skewMs;
    this.#onCredentials = onCredentials;
  }

  /** Returns a copy of the current credentials. */
  credentials(): Credentials {
    return { ...this.#creds, user: { ...this.#creds.user } };
  }

  /** The error that ended the session, or undefined while it lives. */
  get ended(): ParleyAuthError | undefined {
    return this.#ended;
  }

  /** Calls fn once if and when the session ends; returns a function that unregisters it. */
  onEnd(fn: (err: ParleyAuthError) => void): () => void {
    this.#onEnd.add(fn);
    return () => this.#onEnd.delete(fn);
  }

  /**
   * Returns an access token to use now, refreshing first when the current
   * one expires within the skew, capped at half the token's lifetime (a
   * server with short-lived tokens would otherwise see a refresh before every
   * call). A failed early refresh is no error while the
   * current token still works: the call goes ahead and the reactive path
   * (an "expired" answer) tries again. Rejects with ParleyAuthError once the
   * session is over.
   */
  async accessToken(): Promise<string> {
    if (this.#ended) throw this.#ended;
    const { accessToken, accessExpiresAt } = this.#creds;
    const skew = this.#lifetimeMs === undefined ? this.#skewMs : Math.min(this.#skewMs, this.#lifetimeMs / 2);
    if (accessExpiresAt === 0 || Date.now() + skew < accessExpiresAt) return accessToken;
    try {
      await this.refresh(accessToken);
    } catch (err) {
      if (err instanceof ParleyAuthError || Date.now() >= accessExpiresAt) throw err;
    }
    if (this.#ended) throw this.#ended;
    return this.#creds.accessToken;
  }

  /**
   * Trades the refresh token for new tokens. With stale given, it does
   * nothing if stale is no longer the current access token (someone else
   * refreshed meanwhile). Concurrent callers share one Refresh call, since
   * each refresh token works once. Rejects with ParleyAuthError when the
   * server refuses the refresh token (the session is then over), or with the
   * ConnectError of a failed call (the session lives on).
   */
  refresh(stale?: string): Promise<void> {
    if (this.#ended) return Promise.reject(this.#ended);
    if (this.#refreshing) return this.#refreshing;
    if (stale !== undefined && stale !== this.#creds.accessToken) return Promise.resolve();
    this.#refreshing = this.#doRefresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /**
   * Ends the session for good: every later call rejects with err and the
   * onEnd listeners run (once). Returns the error that ended it (the first).
   */
  end(err: ParleyAuthError): ParleyAuthError {
    if (this.#ended) return this.#ended;
    this.#ended = err;
    for (const fn of [...this.#onEnd]) fn(err);
    this.#onEnd.clear();
    return err;
  }

  /**
   * Maps a failed call's error: an Unauthenticated that a refresh cannot fix
   * ends the session and becomes its ParleyAuthError; anything else is
   * returned as it is.
   */
  classify(err: unknown): unknown {
    if (err instanceof ParleyAuthError) return err;
    if (err instanceof ConnectError && err.code === Code.Unauthenticated && !isAccessExpired(err)) {
      return this.end(new ParleyAuthError(`parley: session over: ${err.rawMessage}`, err));
    }
    return err;
  }

  async #doRefresh(): Promise<void> {
    let tokens: Tokens | undefined;
    try {
      const res = await this.#auth.refresh({ refreshToken: this.#creds.refreshToken }, { timeoutMs: refreshTimeoutMs });
      tokens = res.tokens;
    } catch (err) {
      const cerr = ConnectError.from(err);
      if (cerr.code === Code.Unauthenticated) {
        throw this.end(new ParleyAuthError(`parley: refresh refused, session over: ${cerr.rawMessage}`, cerr));
      }
      throw cerr;
    }
    if (!tokens) throw new ConnectError("parley: refresh: the server sent no tokens", Code.Internal);
    if (this.#ended) throw this.#ended; // logged out while the call ran
    this.#creds = { ...this.#creds, ...tokenFields(tokens) };
    this.#lifetimeMs = this.#creds.accessExpiresAt - Date.now();
    this.#onCredentials?.(this.credentials());
  }
}

/** Returns the Credentials fields carried by a Tokens message. */
export function tokenFields(t: Tokens): Pick<Credentials, "accessToken" | "accessExpiresAt" | "refreshToken" | "refreshExpiresAt"> {
  return {
    accessToken: t.accessToken,
    accessExpiresAt: timestampMs(t.accessExpiresAt),
    refreshToken: t.refreshToken,
    refreshExpiresAt: timestampMs(t.refreshExpiresAt),
  };
}

/** Returns the plain, JSON-safe part of a User. */
export function userInfo(u: User | undefined): UserInfo {
  return { id: u?.id ?? "", username: u?.username ?? "", displayName: u?.displayName ?? "" };
}

/** Converts a protobuf Timestamp to milliseconds since the epoch (0 when unset). */
export function timestampMs(ts: Timestamp | undefined): number {
  if (!ts) return 0;
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}
