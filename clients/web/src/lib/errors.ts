// Helpers for errors coming back from the SDK: Connect errors carry a code
// and the server's own message, which is written for people.

import { Code, ConnectError } from "@parley/client";

export { Code };

/** errorCode is the Connect code of err, or undefined when it is not a Connect error. */
export function errorCode(err: unknown): Code | undefined {
  return err instanceof ConnectError ? err.code : undefined;
}

/**
 * errorMessage is the text to show for err: the server's message without
 * Connect's "[code]" prefix, or a plain line for network trouble.
 */
export function errorMessage(err: unknown): string {
  if (err instanceof ConnectError) {
    if (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded || (err.code === Code.Unknown && /fetch/i.test(err.rawMessage))) {
      return "The server can't be reached right now. Try again in a moment.";
    }
    return capitalise(err.rawMessage || "Something went wrong.");
  }
  if (err instanceof Error && err.message !== "") return capitalise(err.message);
  return "Something went wrong.";
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
