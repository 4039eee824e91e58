import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { rememberEndpoint } from "./endpoint.js";

/** Options of {@link createNodeTransport}. */
export interface NodeTransportOptions {
  /** Wire protocol; default "connect". */
  protocol?: "connect" | "grpc" | "grpc-web";
  /** Default "2" for gRPC (which requires it) and "1.1" otherwise. parleyd speaks HTTP/2 without TLS (h2c) too. */
  httpVersion?: "1.1" | "2";
}

/**
 * Returns a Node.js transport (node:http / node:http2) to a parleyd at
 * baseUrl, e.g. "http://127.0.0.1:8080". Throws for gRPC over HTTP/1.1.
 * MediaService.Upload (a client stream) needs HTTP/2 (httpVersion "2", or
 * protocol "grpc"); ParleyClient.upload works over either version.
 */
export function createNodeTransport(baseUrl: string, opts: NodeTransportOptions = {}): Transport {
  const protocol = opts.protocol ?? "connect";
  const httpVersion = opts.httpVersion ?? (protocol === "grpc" ? "2" : "1.1");
  return rememberEndpoint(build(baseUrl, protocol, httpVersion), { baseUrl });
}

function build(baseUrl: string, protocol: NodeTransportOptions["protocol"], httpVersion: "1.1" | "2"): Transport {
  switch (protocol) {
    case "connect":
      return createConnectTransport({ baseUrl, httpVersion });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion });
    case "grpc":
      if (httpVersion !== "2") throw new Error("parley: createNodeTransport: gRPC needs httpVersion \"2\"");
      return createGrpcTransport({ baseUrl });
    default:
      throw new Error(`parley: createNodeTransport: unknown protocol ${String(protocol)}`);
  }
}
