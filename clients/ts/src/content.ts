import { create } from "@bufbuild/protobuf";
import { ContentSchema, type Content } from "./gen/parley/v1/common_pb.js";

/** Returns Content holding a text message (1 byte to 64 KiB of UTF-8). */
export function text(s: string): Content {
  return create(ContentSchema, { body: { case: "text", value: s } });
}

/**
 * Returns Content holding an image message: the uploaded media mediaId (an
 * image: JPEG, PNG, GIF or WebP) with an optional caption. The server fills
 * in the type, file name, size and pixel size from the upload.
 */
export function image(mediaId: string, caption = ""): Content {
  return create(ContentSchema, { body: { case: "image", value: { mediaId, caption } } });
}

/**
 * Returns Content holding a file message: the uploaded media mediaId, any
 * type, with an optional caption. The server fills in the rest.
 */
export function file(mediaId: string, caption = ""): Content {
  return create(ContentSchema, { body: { case: "file", value: { mediaId, caption } } });
}

/**
 * Returns a fresh client_msg_id. crypto.randomUUID exists only in secure
 * contexts (https, localhost); an app served over plain http on a LAN
 * address still has getRandomValues, so build a v4 UUID from that.
 */
export function newClientMsgId(): string {
  const c = globalThis.crypto;
  if (typeof c.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
