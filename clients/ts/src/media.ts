import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { UploadRequestSchema, type MediaInfo, type MediaService, type UploadRequest } from "./gen/parley/v1/media_pb.js";
import { resolveUrl } from "./endpoint.js";

/** Signed URLs of one media, from {@link ParleyClient.mediaUrls}. */
export interface MediaUrls {
  /** info describes the media as the server inspected it. */
  info: MediaInfo;
  /** url fetches the original with a plain GET (no token): images inline, other files as attachments. */
  url: string;
  /** thumbnailUrl fetches the thumbnail (longest side ≤ 320 px); unset when there is none. */
  thumbnailUrl?: string;
  /** expiresAt is when the server stops honouring both URLs (server's clock). */
  expiresAt: Date;
}

/** Options of {@link ParleyClient.upload}. */
export interface UploadOptions {
  /**
   * uploadId names the upload (1..64 chars; default a fresh UUID). Passing
   * the id of an interrupted upload resumes it: the client asks the server
   * how many bytes it holds (GetUpload) and sends the rest.
   */
  uploadId?: string;
  /** signal aborts the upload. */
  signal?: AbortSignal;
}

/** Options of {@link ParleyClient.download}. */
export interface DownloadOptions {
  /** thumbnail asks for the thumbnail instead of the original (NotFound when it has none). */
  thumbnail?: boolean;
  /** signal aborts the download. */
  signal?: AbortSignal;
}

/** uploadChunkBytes is the size of Upload's chunks: the server's maximum, 1 MiB. */
export const uploadChunkBytes = 1 << 20;
// A URL is refreshed this long before it expires (at most half its
// lifetime), so one handed out has time to be used.
const urlRefreshMarginMs = 30_000;
// The cache keeps the URLs of this many media, dropping the least recently used.
const urlCacheSize = 500;

interface CacheEntry {
  urls: Promise<MediaUrls>;
  /** refreshAt is when the entry is stale (ms epoch); Infinity while the call runs. */
  refreshAt: number;
}

/**
 * UrlCache holds signed URLs per media id. Concurrent asks for one id share
 * a call; a failed call is not kept.
 */
export class UrlCache {
  readonly #fetch: (mediaId: string) => Promise<MediaUrls>;
  readonly #entries = new Map<string, CacheEntry>();

  constructor(fetch: (mediaId: string) => Promise<MediaUrls>) {
    this.#fetch = fetch;
  }

  /** get returns the cached URLs while fresh, else fetches them; refresh forces a fetch (joining one running). */
  get(mediaId: string, refresh = false): Promise<MediaUrls> {
    const cur = this.#entries.get(mediaId);
    const now = Date.now();
    if (cur && (cur.refreshAt === Infinity || (!refresh && now < cur.refreshAt))) {
      // Most recently used goes last; the first is evicted first.
      this.#entries.delete(mediaId);
      this.#entries.set(mediaId, cur);
      return cur.urls;
    }
    const entry: CacheEntry = { urls: this.#fetch(mediaId), refreshAt: Infinity };
    this.#entries.delete(mediaId);
    this.#entries.set(mediaId, entry);
    while (this.#entries.size > urlCacheSize) this.#entries.delete(this.#entries.keys().next().value!);
    entry.urls.then(
      (u) => {
        const lifetime = u.expiresAt.getTime() - now;
        entry.refreshAt = u.expiresAt.getTime() - Math.min(urlRefreshMarginMs, Math.max(0, lifetime) / 2);
      },
      () => {
        if (this.#entries.get(mediaId) === entry) this.#entries.delete(mediaId);
      },
    );
    return entry.urls;
  }
}

/** getMediaUrls calls GetMedia and resolves its URLs against baseUrl. */
export async function getMediaUrls(media: Client<typeof MediaService>, baseUrl: string, mediaId: string): Promise<MediaUrls> {
  const res = await media.getMedia({ mediaId });
  if (!res.media) throw new Error(`parley: GetMedia ${mediaId}: the server sent no media`);
  if (!res.urlsExpireAt) throw new Error(`parley: GetMedia ${mediaId}: the server sent no expiry`);
  const out: MediaUrls = { info: res.media, url: resolveUrl(baseUrl, res.url), expiresAt: timestampDate(res.urlsExpireAt) };
  if (res.thumbnailUrl) out.thumbnailUrl = resolveUrl(baseUrl, res.thumbnailUrl);
  return out;
}

/**
 * download reads a Download stream whole. It rejects when the stream ends
 * with fewer or more bytes than its MediaInfo announced.
 */
export async function download(media: Client<typeof MediaService>, mediaId: string, opts: DownloadOptions): Promise<Uint8Array> {
  const thumbnail = opts.thumbnail ?? false;
  let info: MediaInfo | undefined;
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const res of media.download({ mediaId, thumbnail }, { signal: opts.signal })) {
    switch (res.part.case) {
      case "info":
        info = res.part.value;
        break;
      case "chunk":
        chunks.push(res.part.value);
        n += res.part.value.length;
        break;
    }
  }
  if (!info) throw new Error(`parley: Download ${mediaId}: the server sent no MediaInfo`);
  const want = thumbnail ? info.thumbnail?.sizeBytes : info.sizeBytes;
  if (want !== undefined && BigInt(n) !== want) {
    throw new Error(`parley: Download ${mediaId}: got ${n} bytes, the server announced ${want}`);
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * uploadRequests is an Upload stream's messages: the header, then bytes from
 * offset on in chunks of at most 1 MiB.
 */
export async function* uploadRequests(
  bytes: Uint8Array,
  header: { uploadId: string; fileName: string; sha256: Uint8Array; offset: number },
): AsyncGenerator<UploadRequest> {
  yield create(UploadRequestSchema, {
    part: {
      case: "header",
      value: {
        uploadId: header.uploadId,
        fileName: header.fileName,
        sizeBytes: BigInt(bytes.length),
        sha256: header.sha256,
        offset: BigInt(header.offset),
      },
    },
  });
  for (let off = header.offset; off < bytes.length; off += uploadChunkBytes) {
    yield create(UploadRequestSchema, { part: { case: "chunk", value: bytes.subarray(off, off + uploadChunkBytes) } });
  }
}

/** bytesOf reads a Blob whole, or returns a Uint8Array as it is. */
export async function bytesOf(data: Uint8Array | Blob): Promise<Uint8Array> {
  if (data instanceof Uint8Array) return data;
  return new Uint8Array(await data.arrayBuffer());
}

/** sha256 is the SHA-256 digest of bytes (crypto.subtle: Node 20+, secure browser contexts). */
export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error("parley: upload: crypto.subtle is missing (browsers offer it in secure contexts only)");
  // digest takes an ArrayBuffer-backed view; copy one backed by anything else.
  const view = bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
  return new Uint8Array(await subtle.digest("SHA-256", view));
}
