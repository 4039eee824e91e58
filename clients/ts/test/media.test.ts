import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { ParleyClient } from "../src/client.js";
import { file, image } from "../src/content.js";
import type { MediaRef, Message } from "../src/gen/parley/v1/common_pb.js";
import type { MediaInfo } from "../src/gen/parley/v1/media_pb.js";
import { uploadChunkBytes } from "../src/media.js";
import { createNodeTransport } from "../src/node.js";
import { createWebTransport } from "../src/web.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { gradientPng } from "./png.js";
import { newUser, record, waitFor, type Recorder, type TransportKind } from "./helpers.js";

let srv: Parleyd;
beforeAll(async () => {
  srv = await startParleyd();
});
afterAll(async () => {
  await srv?.stop();
});

/** upload() uses unary UploadPart calls, so it works on every transport. */
const uploaders: TransportKind[] = [
  { name: "grpc_node_http2", make: (url) => createNodeTransport(url, { protocol: "grpc" }) },
  { name: "connect_node_http1", make: (url) => createNodeTransport(url) },
  { name: "connect_fetch", make: (url) => createWebTransport(url) },
  { name: "grpc_web_fetch", make: (url) => createWebTransport(url, { protocol: "grpc-web" }) },
];

/**
 * failingParts wraps a transport so that UploadPart calls fail as a flaky
 * network would: fail(n) is asked before the nth call (from 0) and may say
 * "before" (the call never reaches the server) or "after" (the server
 * stores the chunk, the acknowledgement is lost); both reject with
 * Unavailable.
 */
function failingParts(inner: Transport, fail: (n: number) => "before" | "after" | undefined): { transport: Transport; calls: () => number } {
  let n = 0;
  const transport: Transport = {
    async unary(method, ...rest) {
      if (method.name !== "UploadPart") return inner.unary(method, ...rest);
      const how = fail(n++);
      if (how === "before") throw new ConnectError("injected: connection refused", Code.Unavailable);
      const res = await inner.unary(method, ...rest);
      if (how === "after") throw new ConnectError("injected: connection reset", Code.Unavailable);
      return res;
    },
    stream: (...args) => inner.stream(...args),
  };
  return { transport, calls: () => n };
}

/** codeOf is the Connect code a promise rejected with (undefined when it resolved or failed otherwise). */
async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  try {
    await p;
  } catch (err) {
    return err instanceof ConnectError ? err.code : undefined;
  }
  return undefined;
}

async function fetchBytes(url: string): Promise<{ status: number; type: string; disposition: string; bytes: Uint8Array }> {
  const res = await fetch(url);
  return {
    status: res.status,
    type: res.headers.get("content-type") ?? "",
    disposition: res.headers.get("content-disposition") ?? "",
    bytes: new Uint8Array(await res.arrayBuffer()),
  };
}

/**
 * fingerprint stands for big byte arrays in assertions: Vitest compares typed
 * arrays element by element, which takes seconds per MiB.
 */
function fingerprint(b: Uint8Array): string {
  return `${b.length} bytes, sha256 ${createHash("sha256").update(b).digest("hex")}`;
}

function mediaOf(m: Message): { case: "image" | "file"; ref: MediaRef } | undefined {
  const b = m.content?.body;
  return b?.case === "image" || b?.case === "file" ? { case: b.case, ref: b.value } : undefined;
}

describe.each(uploaders)("media uploaded over $name", ({ make }) => {
  let alice: ParleyClient;
  let bob: ParleyClient;
  let carol: ParleyClient;
  let conv: string;
  let a: Recorder;
  let b: Recorder;
  const png = gradientPng(400, 300, 1);
  const notes = new TextEncoder().encode("Parley notes\nline two\n");
  let pic: MediaInfo;

  beforeAll(async () => {
    // Alice uploads from Node; Bob reads through fetch as a browser would;
    // Carol, a stranger, over Node's HTTP/1.1.
    [alice, bob, carol] = await Promise.all([
      newUser(make(srv.url), "alice"),
      newUser(createWebTransport(srv.url), "bob"),
      newUser(createNodeTransport(srv.url), "carol"),
    ]);
    const res = await alice.conversations.createDirect({ peer: { case: "username", value: bob.user.username } });
    conv = res.conversation!.id;
    a = record(alice);
    b = record(bob);
    await Promise.all([a.next("synced"), b.next("synced")]);
    pic = await alice.upload(png, "gradient.png");
  });
  afterAll(async () => {
    await Promise.all([a?.sub.close(), b?.sub.close()]);
  });

  it("uploads an image and describes it from the bytes, with a thumbnail", () => {
    expect(pic.mediaId).not.toBe("");
    expect(pic.contentType).toBe("image/png");
    expect(pic.fileName).toBe("gradient.png");
    expect(pic.sizeBytes).toBe(BigInt(png.length));
    expect([pic.width, pic.height]).toEqual([400, 300]);
    expect([pic.thumbnail?.width, pic.thumbnail?.height]).toEqual([320, 240]);
    expect(pic.uploaderId).toBe(alice.userId);
  });

  it("sends an image message the peer receives with the server's facts", async () => {
    const sent = await a.sub.send(conv, image(pic.mediaId, "a gradient"));
    const got = await waitFor("bob has the image", () => b.messages(conv).find((m) => m.seq === sent.seq));
    expect(mediaOf(got)).toEqual({
      case: "image",
      ref: expect.objectContaining({
        mediaId: pic.mediaId,
        contentType: "image/png",
        fileName: "gradient.png",
        sizeBytes: BigInt(png.length),
        width: 400,
        height: 300,
        caption: "a gradient",
      }),
    });
  });

  it("mediaUrls gives signed URLs that fetch the exact bytes and the thumbnail, cached", async () => {
    const urls = await bob.mediaUrls(pic.mediaId);
    expect(urls.info.mediaId).toBe(pic.mediaId);
    expect(urls.url.startsWith(`${srv.url}/media/`)).toBe(true);
    expect(urls.expiresAt.getTime()).toBeGreaterThan(Date.now());
    const orig = await fetchBytes(urls.url);
    expect(orig.status).toBe(200);
    expect(orig.type).toBe("image/png");
    expect(orig.disposition).toMatch(/^inline/);
    expect(orig.bytes).toEqual(png);
    expect(urls.thumbnailUrl).toBeDefined();
    const thumb = await fetchBytes(urls.thumbnailUrl!);
    expect(thumb.status).toBe(200);
    expect(thumb.type).toMatch(/^image\//);
    expect(BigInt(thumb.bytes.length)).toBe(urls.info.thumbnail?.sizeBytes);
    // Fresh URLs come from the cache: no call, the same answer.
    expect(await bob.mediaUrls(pic.mediaId)).toBe(urls);
    const again = await bob.mediaUrls(pic.mediaId, { refresh: true });
    expect(again).not.toBe(urls);
    expect((await fetchBytes(again.url)).bytes).toEqual(png);
  });

  it("download() returns the original and the thumbnail, also over fetch", async () => {
    expect(await bob.download(pic.mediaId)).toEqual(png);
    expect(await alice.download(pic.mediaId)).toEqual(png);
    const { thumbnailUrl } = await bob.mediaUrls(pic.mediaId);
    const viaUrl = await fetchBytes(thumbnailUrl!);
    expect(await bob.download(pic.mediaId, { thumbnail: true })).toEqual(viaUrl.bytes);
  });

  it("sends a file that downloads as an attachment", async () => {
    const info = await alice.upload(new Blob([notes]), "notes.txt");
    expect(info.contentType).toMatch(/^text\/plain/);
    expect(info.thumbnail).toBeUndefined();
    const sent = await a.sub.send(conv, file(info.mediaId));
    const got = await waitFor("bob has the file", () => b.messages(conv).find((m) => m.seq === sent.seq));
    const media = mediaOf(got);
    expect(media?.case).toBe("file");
    expect(media?.ref.fileName).toBe("notes.txt");
    expect(media?.ref.sizeBytes).toBe(BigInt(notes.length));
    const urls = await bob.mediaUrls(info.mediaId);
    expect(urls.thumbnailUrl).toBeUndefined();
    const res = await fetchBytes(urls.url);
    expect(res.disposition).toMatch(/^attachment/);
    expect(res.disposition).toContain("notes.txt");
    expect(res.bytes).toEqual(notes);
    expect(await bob.download(info.mediaId)).toEqual(notes);
  });

  it("uploads and downloads a file of several chunks", async () => {
    const big = new Uint8Array(2 * 1024 * 1024 + 12345);
    for (let i = 0; i < big.length; i += 65536) globalThis.crypto.getRandomValues(big.subarray(i, i + 65536));
    const info = await alice.upload(big, "random.bin");
    expect(info.sizeBytes).toBe(BigInt(big.length));
    expect(fingerprint(await alice.download(info.mediaId))).toBe(fingerprint(big));
  });

  it("reports progress per acknowledged chunk", async () => {
    const data = new Uint8Array(2 * uploadChunkBytes + 100).map((_, i) => (i * 13) % 256);
    const seen: [number, number][] = [];
    const info = await alice.upload(data, "progress.bin", { onProgress: (sent, total) => seen.push([sent, total]) });
    expect(info.sizeBytes).toBe(BigInt(data.length));
    expect(seen).toEqual([
      [0, data.length],
      [uploadChunkBytes, data.length],
      [2 * uploadChunkBytes, data.length],
      [data.length, data.length],
    ]);
  });

  it("resumes an interrupted upload with the same uploadId", async () => {
    const data = new Uint8Array(2 * uploadChunkBytes + 4096).map((_, i) => (i * 7) % 251);
    const uploadId = `resume-${Math.random().toString(36).slice(2)}`;
    // The first attempt is aborted once the server acknowledged one chunk.
    const stop = new AbortController();
    const first = alice.upload(data, "resumed.bin", {
      uploadId,
      signal: stop.signal,
      onProgress: (sent) => sent >= uploadChunkBytes && stop.abort(),
    });
    expect(await codeOf(first)).toBe(Code.Canceled);
    const st = await alice.media.getUpload({ uploadId });
    expect(st.receivedBytes).toBe(BigInt(uploadChunkBytes));
    const seen: number[] = [];
    const info = await alice.upload(data, "resumed.bin", { uploadId, onProgress: (sent) => seen.push(sent) });
    // The second attempt starts where the server was.
    expect(seen).toEqual([uploadChunkBytes, 2 * uploadChunkBytes, data.length]);
    expect(info.sizeBytes).toBe(BigInt(data.length));
    expect(fingerprint(await alice.download(info.mediaId))).toBe(fingerprint(data));
  });

  it("sends a chunk again after a transient failure, and resyncs after a lost acknowledgement", async () => {
    const data = new Uint8Array(2 * uploadChunkBytes + 1).map((_, i) => (i * 3) % 256);
    // Call 0 never arrives; call 1 stores chunk 0 but its answer is lost, so
    // call 2 resends chunk 0 at offset 0, which the server refuses
    // (FailedPrecondition header.offset): GetUpload says 1 MiB, and the rest follows.
    const flaky = failingParts(make(srv.url), (n) => (n === 0 ? "before" : n === 1 ? "after" : undefined));
    const client = ParleyClient.resume(flaky.transport, alice.credentials());
    const info = await client.upload(data, "flaky.bin");
    expect(flaky.calls()).toBe(5);
    expect(fingerprint(await alice.download(info.mediaId))).toBe(fingerprint(data));
  });

  it("does not retry what a retry cannot fix", async () => {
    const flaky = failingParts(make(srv.url), () => undefined);
    const client = ParleyClient.resume(flaky.transport, alice.credentials());
    // An empty file breaks the request's rules: InvalidArgument, once.
    expect(await codeOf(client.upload(new Uint8Array(0), "empty.bin"))).toBe(Code.InvalidArgument);
    expect(flaky.calls()).toBe(1);
  });

  it("refuses a file sent as an image", async () => {
    const info = await alice.upload(notes, "notes.txt");
    await expect(a.sub.send(conv, image(info.mediaId))).rejects.toThrow(/not an image/);
  });

  it("hides media from strangers and, after a recall, from the peer", async () => {
    expect(await codeOf(carol.mediaUrls(pic.mediaId))).toBe(Code.NotFound);
    expect(await codeOf(carol.download(pic.mediaId))).toBe(Code.NotFound);
    expect(await codeOf(carol.media.getMedia({ mediaId: "no-such-media" }))).toBe(Code.NotFound);

    const own = await alice.upload(gradientPng(64, 48, 2), "secret.png");
    const m = await a.sub.send(conv, image(own.mediaId));
    await waitFor("bob has it", () => b.messages(conv).some((x) => x.seq === m.seq));
    expect((await bob.mediaUrls(own.mediaId)).info.mediaId).toBe(own.mediaId);
    await a.sub.recall(conv, m.seq);
    expect(await codeOf(bob.mediaUrls(own.mediaId, { refresh: true }))).toBe(Code.NotFound);
    expect(await codeOf(bob.download(own.mediaId))).toBe(Code.NotFound);
    // The uploader keeps access to what they uploaded.
    expect(await alice.download(own.mediaId)).toEqual(gradientPng(64, 48, 2));
  });
});

describe("signed URLs", () => {
  let short: Parleyd;
  let alice: ParleyClient;
  let info: MediaInfo;
  const png = gradientPng(40, 30, 3);

  beforeAll(async () => {
    // URLs that expire quickly, so the cache's refresh shows.
    short = await startParleyd({ env: { PARLEY_MEDIA_URL_TTL: "4s" } });
    alice = await newUser(createNodeTransport(short.url, { protocol: "grpc" }), "alice");
    info = await alice.upload(png, "tiny.png");
  });
  afterAll(async () => {
    await short?.stop();
  });

  it("are refreshed shortly before they expire, and stop working after", async () => {
    const first = await alice.mediaUrls(info.mediaId);
    expect(first.expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(4_000);
    // Within half the lifetime the cache answers.
    expect(await alice.mediaUrls(info.mediaId)).toBe(first);
    // Past it, a new URL with a later expiry.
    const deadline = Date.now() + 15_000;
    let next = first;
    while (next === first && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      next = await alice.mediaUrls(info.mediaId);
    }
    expect(next.expiresAt.getTime()).toBeGreaterThan(first.expiresAt.getTime());
    expect((await fetchBytes(next.url)).bytes).toEqual(png);
    // The old URL dies at its expiry.
    await waitFor("the old URL expired", () => Date.now() > first.expiresAt.getTime() + 1_000);
    const old = await fetchBytes(first.url);
    expect(old.status).toBe(403);
  });

  it("resolve against ClientOptions.baseUrl for a transport the SDK did not make", async () => {
    const inner = createNodeTransport(short.url, { protocol: "grpc" });
    const wrapped = { unary: inner.unary.bind(inner), stream: inner.stream.bind(inner) };
    const plain = ParleyClient.resume(wrapped, alice.credentials(), { baseUrl: `${short.url}/` });
    const urls = await plain.mediaUrls(info.mediaId);
    expect(urls.url.startsWith(`${short.url}/media/`)).toBe(true);
    expect((await fetchBytes(urls.url)).bytes).toEqual(png);
  });
});
