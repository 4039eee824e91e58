import type { Transport } from "@connectrpc/connect";

/** What the SDK knows about where a transport goes. */
export interface Endpoint {
  /** baseUrl is the server's address the transport was created with. */
  baseUrl: string;
}

// Keyed by the transport object itself, so a transport the app wraps (an
// interceptor of its own) is simply unknown, never wrongly described.
const endpoints = new WeakMap<Transport, Endpoint>();

/** rememberEndpoint records what createWebTransport/createNodeTransport built; returns t. */
export function rememberEndpoint(t: Transport, e: Endpoint): Transport {
  endpoints.set(t, e);
  return t;
}

/** endpointOf is what rememberEndpoint recorded for t, or undefined. */
export function endpointOf(t: Transport): Endpoint | undefined {
  return endpoints.get(t);
}

/**
 * resolveUrl resolves a URL the server sent relative to its address (e.g.
 * "/media/x?exp=…") against baseUrl. A path keeps baseUrl's own path prefix,
 * as the transports do for calls ("https://host/chat" + "/media/x").
 */
export function resolveUrl(baseUrl: string, url: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) return url;
  if (url.startsWith("/")) return baseUrl.replace(/\/+$/, "") + url;
  return new URL(url, baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`).toString();
}
