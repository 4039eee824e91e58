import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { rememberEndpoint } from "./endpoint.js";

/** Options of {@link createWebTransport}. */
export interface WebTransportOptions {
  /** Wire protocol; default "connect". Browsers cannot speak plain gRPC. */
  protocol?: "connect" | "grpc-web";
}

/**
 * Returns a fetch-based transport to a parleyd at baseUrl (e.g.
 * "https://chat.example.org" or location.origin), for browsers and anything
 * else with fetch and streaming response bodies. Requests cannot stream, so
 * ParleyClient.upload refuses this transport (downloads and URLs work).
 */
export function createWebTransport(baseUrl: string, opts: WebTransportOptions = {}): Transport {
  const protocol = opts.protocol ?? "connect";
  // fetch cannot stream a request body in browsers: no ParleyClient.upload.
  const endpoint = { baseUrl, clientStreaming: false };
  switch (protocol) {
    case "connect":
      return rememberEndpoint(createConnectTransport({ baseUrl }), endpoint);
    case "grpc-web":
      return rememberEndpoint(createGrpcWebTransport({ baseUrl }), endpoint);
    default:
      throw new Error(`parley: createWebTransport: unknown protocol ${String(protocol)}`);
  }
}
