import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { MediaInfo, MediaService } from "./gen/parley/v1/media_pb.js";
import { Backoff, sleep } from "./backoff.js";
import { isTransient } from "./errors.js";
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
  /**
   * signal aborts the upload. What the server acknowledged stays staged:
   * call again with the same uploadId to resume.
   */
  signal?: AbortSignal;
  /**
   * onProgress is called with the bytes the server holds and the file's
   * size: once at the start (with the resume point), then after every
   * acknowledged chunk; the last call has sent === total.
   */
  onProgress?: (sent: number, total: number) => void;
}

/** Options of {@link ParleyClient.download}. */
export interface DownloadOptions {
  /** thumbnail asks for the thumbnail instead of the original (NotFound when it has none). */
  thumbnail?: boolean;
  /** signal aborts the download. */
  signal?: AbortSignal;
}

/** uploadChunkBytes is the size of an upload's chunks (one per UploadPart call): the server's maximum, 1 MiB. */
export const uploadChunkBytes = 1 << 20;
// A chunk that failed for a transient reason is sent again up to this many
// times in a row (backoff between tries), and a rejected offset is resynced
// with GetUpload up to this many times in a row.
const uploadPartRetries = 6;
const uploadResyncs = 3;
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

/** The header fields of an upload that do not change from chunk to chunk. */
export interface UploadFile {
  uploadId: string;
  fileName: string;
  sha256: Uint8Array;
}

/**
 * uploadParts uploads bytes with UploadPart, one chunk of at most 1 MiB per
 * call: unary calls work on every transport, fetch in browsers included. A
 * resumed upload (opts.uploadId set) starts where GetUpload says the server
 * is. A chunk that fails transiently (see {@link isRetryablePart}) is sent
 * again after a backoff; when the server rejects the offset (another
 * attempt moved the upload on, or an acknowledgement was lost) the client
 * asks GetUpload where to continue. Any other error rejects.
 */
export async function uploadParts(
  media: Client<typeof MediaService>,
  bytes: Uint8Array,
  file: UploadFile,
  opts: UploadOptions,
  backoff = new Backoff(200, 5_000),
): Promise<MediaInfo> {
  const { signal, onProgress } = opts;
  const total = bytes.length;
  let offset = opts.uploadId !== undefined ? await resumeOffset(media, file.uploadId, total, signal) : 0;
  onProgress?.(offset, total);
  let failures = 0;
  let resyncs = 0;
  for (;;) {
    const header = { ...file, sizeBytes: BigInt(total), offset: BigInt(offset) };
    try {
      const res = await media.uploadPart({ header, chunk: bytes.subarray(offset, offset + uploadChunkBytes) }, { signal });
      if (res.media) {
        onProgress?.(total, total);
        return res.media;
      }
      const next = Number(res.receivedBytes);
      if (next <= offset || next >= total) {
        throw new Error(`parley: UploadPart ${file.uploadId}: the server acknowledged ${next} of ${total} bytes after offset ${offset}`);
      }
      offset = next;
      failures = 0;
      resyncs = 0;
      onProgress?.(offset, total);
    } catch (err) {
      if (signal?.aborted) throw err;
      if (isOffsetRejected(err) && resyncs++ < uploadResyncs) {
        offset = await resumeOffset(media, file.uploadId, total, signal);
        onProgress?.(offset, total);
        continue;
      }
      if (!isRetryablePart(err) || failures >= uploadPartRetries) throw err;
      // An abort during the wait fails the next call with Canceled.
      await sleep(backoff.delay(failures++), signal);
    }
  }
}

/** resumeOffset is how many bytes of the upload the server holds (0 when it holds none, or holds another file's). */
export async function resumeOffset(media: Client<typeof MediaService>, uploadId: string, size: number, signal?: AbortSignal): Promise<number> {
  try {
    const st = await media.getUpload({ uploadId }, { signal });
    // Another file under the same id: start over and let the server judge.
    return st.sizeBytes === BigInt(size) ? Number(st.receivedBytes) : 0;
  } catch (err) {
    // NotFound: nothing staged (never begun, or it completed and the
    // acknowledgement was lost: then the server stores the bytes once).
    if (err instanceof ConnectError && err.code === Code.NotFound) return 0;
    throw err;
  }
}

/**
 * isRetryablePart reports whether a failed UploadPart is worth sending
 * again unchanged: the server was unreachable or restarting, the call timed
 * out, the connection broke (fetch reports that as Unknown, connect-node as
 * Internal or Unknown), or another call still held the upload (Aborted).
 * ResourceExhausted is not retried: it is also how limits are reported.
 */
export function isRetryablePart(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  if (err.code === Code.Aborted) return true;
  // Otherwise what any call retries, less ResourceExhausted.
  return err.code !== Code.ResourceExhausted && isTransient(err);
}

/** isOffsetRejected reports whether the server refused a chunk's header.offset (resume from GetUpload). */
function isOffsetRejected(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.FailedPrecondition && err.rawMessage.startsWith("header.offset:");
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
