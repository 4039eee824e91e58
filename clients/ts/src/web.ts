import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

/** Options of {@link createWebTransport}. */
export interface WebTransportOptions {
  /** Wire protocol; default "connect". Browsers cannot speak plain gRPC. */
  protocol?: "connect" | "grpc-web";
}

/**
 * Returns a fetch-based transport to a parleyd at baseUrl (e.g.
 * "https://chat.example.org" or location.origin), for browsers and anything
 * else with fetch and streaming response bodies.
 */
export function createWebTransport(baseUrl: string, opts: WebTransportOptions = {}): Transport {
  const protocol = opts.protocol ?? "connect";
  switch (protocol) {
    case "connect":
      return createConnectTransport({ baseUrl });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl });
    default:
      throw new Error(`parley: createWebTransport: unknown protocol ${String(protocol)}`);
  }
}
