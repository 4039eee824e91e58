import type { Transport } from "@connectrpc/connect";
import { isAccessExpired } from "./errors.js";
import type { TokenManager } from "./tokens.js";

/**
 * Wraps a transport so every call carries the device's access token as
 * "Authorization: Bearer". This plays the part of an interceptor, but works
 * on a transport the app already built (interceptors are fixed when a
 * transport is created).
 *
 * A unary call the server rejects because the token expired is refreshed
 * and retried once. Streams are not retried here: the subscription
 * reconnects. An Unauthenticated error a refresh cannot fix ends the session
 * and surfaces as ParleyAuthError (see TokenManager.classify), from unary
 * calls and from opening a stream; errors read from an open stream are the
 * subscription's to classify.
 */
export function withBearer(inner: Transport, tokens: TokenManager): Transport {
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const token = await tokens.accessToken();
      try {
        return await inner.unary(method, signal, timeoutMs, bearer(header, token), input, contextValues);
      } catch (err) {
        if (!isAccessExpired(err)) throw tokens.classify(err);
      }
      await tokens.refresh(token);
      const fresh = await tokens.accessToken();
      try {
        return await inner.unary(method, signal, timeoutMs, bearer(header, fresh), input, contextValues);
      } catch (err) {
        throw tokens.classify(err);
      }
    },
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      const token = await tokens.accessToken();
      try {
        return await inner.stream(method, signal, timeoutMs, bearer(header, token), input, contextValues);
      } catch (err) {
        throw tokens.classify(err);
      }
    },
  };
}

function bearer(init: HeadersInit | undefined, token: string): Headers {
  const h = new Headers(init);
  h.set("Authorization", `Bearer ${token}`);
  return h;
}
