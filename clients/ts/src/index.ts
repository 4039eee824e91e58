/**
 * @parley/client: the TypeScript SDK of Parley. Start with
 * {@link ParleyClient}; get a Transport from "@parley/client/web" (browsers)
 * or "@parley/client/node". The generated messages, enums and services are
 * re-exported, so apps import types like Message and ConversationKind from
 * here.
 */
export { ParleyClient, type ClientOptions, type HistoryOptions } from "./client.js";
export { Subscription, type SubscribeOptions, type SubscriptionEvent, type SubscriptionState } from "./subscription.js";
export type { Credentials, UserInfo } from "./tokens.js";
export { ParleyAuthError, isAccessExpired } from "./errors.js";
export { text, image, file } from "./content.js";
export { type MediaUrls, type UploadOptions, type DownloadOptions } from "./media.js";
export { Backoff } from "./backoff.js";
export { Dedup } from "./dedup.js";
export { AckCoalescer, type AckSender } from "./acks.js";
export { ConnectError, Code, type Transport, type Client } from "@connectrpc/connect";

export * from "./gen/parley/v1/common_pb.js";
export * from "./gen/parley/v1/auth_pb.js";
export * from "./gen/parley/v1/chat_pb.js";
export * from "./gen/parley/v1/conversation_pb.js";
export * from "./gen/parley/v1/media_pb.js";
