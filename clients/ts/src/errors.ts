import { Code, ConnectError } from "@connectrpc/connect";

/**
 * ParleyAuthError means the device's session is over: its refresh token was
 * rejected (expired, revoked, reused), the server refused its access token
 * for a reason a refresh cannot fix ("session revoked", "invalid access
 * token"), or the app called logout(). Every later call of the client rejects
 * with it and its subscriptions close: sign in again.
 */
export class ParleyAuthError extends Error {
  /** The server's verdict, when there was one (logout() has none). */
  declare readonly cause: ConnectError | undefined;

  /**
   * @param message what ended the session.
   * @param cause the server's error behind it, if any.
   */
  constructor(message: string, cause?: ConnectError) {
    super(message, { cause });
    this.name = "ParleyAuthError";
  }
}

/**
 * Reports whether err is the server saying the access token expired (as
 * opposed to missing, invalid or revoked): the one Unauthenticated a refresh
 * fixes.
 */
export function isAccessExpired(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unauthenticated && err.rawMessage.includes("expired");
}

/**
 * Reports whether a failed call is worth repeating unchanged: the server was
 * unreachable, restarting or overloaded, or the connection broke (which
 * connect-node reports as Internal or Unknown, and fetch as Unknown). Only
 * safe for idempotent calls, such as a send with a fixed client_msg_id.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof ParleyAuthError) return false;
  // Clients wrap every failure of a call, network ones included, in a
  // ConnectError; anything else is a bug that a retry would only repeat.
  if (!(err instanceof ConnectError)) return false;
  switch (err.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.ResourceExhausted:
    case Code.Internal:
    case Code.Unknown:
      return true;
    default:
      return false;
  }
}
