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
 * else with fetch and streaming response bodies. Requests cannot stream
 * (no client streams such as MediaService.Upload); ParleyClient.upload uses
 * unary UploadPart calls, which work here.
 */
export function createWebTransport(baseUrl: string, opts: WebTransportOptions = {}): Transport {
  const protocol = opts.protocol ?? "connect";
  const endpoint = { baseUrl };
  switch (protocol) {
    case "connect":
      return rememberEndpoint(createConnectTransport({ baseUrl }), endpoint);
    case "grpc-web":
      return rememberEndpoint(createGrpcWebTransport({ baseUrl }), endpoint);
    default:
      throw new Error(`parley: createWebTransport: unknown protocol ${String(protocol)}`);
  }
}
