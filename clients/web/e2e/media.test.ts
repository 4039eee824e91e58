// Photos and files in the web app: a Node-side SDK client (a bot, say)
// uploads a PNG and a text file and sends them into a direct chat; the other person's tab shows the
// thumbnail and a file card whose link downloads the exact bytes.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { ParleyClient, file, image, text, type Subscription } from "@parley/client";
import { createNodeTransport } from "@parley/client/node";
import { startParleyd, type Parleyd } from "../../ts/test/parleyd.ts";
import { gradientPng } from "../../ts/test/png.ts";
import { distinctColours, launchBrowser, screenshot, until, waitMs, webDir } from "./browser.ts";
import { Tab } from "./app.ts";

const password = "correct horse battery";

let server: Parleyd | undefined;
let browser: Browser | undefined;
let sdk: ParleyClient;
let sub: Subscription;
let bob: Tab;
let conv: string;
const pageErrors: string[] = [];
const png = gradientPng(480, 360, 5);
const notes = new TextEncoder().encode("Minutes of the meeting\n1. Photos work.\n2. Files too.\n");

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** fetchInPage fetches url from the page (same origin, its cookies and CSP) and returns the body's SHA-256 and length. */
async function fetchInPage(tab: Tab, url: string): Promise<{ status: number; sha256: string; length: number; disposition: string }> {
  return tab.page.evaluate(async (u) => {
    const res = await fetch(u);
    const body = new Uint8Array(await res.arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
    return {
      status: res.status,
      sha256: Array.from(digest, (x) => x.toString(16).padStart(2, "0")).join(""),
      length: body.length,
      disposition: res.headers.get("content-disposition") ?? "",
    };
  }, url);
}

describe("photos and files", () => {
  beforeAll(async () => {
    server = await startParleyd({ webDir });
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await sub?.close();
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  it("shows a photo's thumbnail and a file card that downloads the exact bytes", async ({ onTestFailed }) => {
    onTestFailed(async () => {
      if (bob) await screenshot(bob.page, "failed-media-bob").catch(() => {});
    });
    const ctx = await browser!.newContext({ viewport: { width: 1180, height: 780 } });
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(err.message));
    page.on("console", (msg) => {
      if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) pageErrors.push(msg.text());
    });
    await page.goto(server!.url);
    bob = new Tab(page, "bob");
    await bob.register("bob", "Bob", password);

    // Alice is a Node program: it uploads over gRPC (HTTP/2).
    sdk = await ParleyClient.register(createNodeTransport(server!.url, { protocol: "grpc" }), "alice", password, { displayName: "Alice" });
    const res = await sdk.conversations.createDirect({ peer: { case: "username", value: "bob" } });
    conv = res.conversation!.id;
    sub = sdk.subscribe({ onEvent: () => {} });
    const [pic, doc] = await Promise.all([sdk.upload(png, "bay.png"), sdk.upload(notes, "minutes.txt")]);
    expect([pic.width, pic.height]).toEqual([480, 360]);

    await sub.send(conv, text("Photos from Saturday"));
    await sub.send(conv, file(doc.mediaId));
    await bob.waitText("conversation-preview", "📎 minutes.txt");
    const photo = await sub.send(conv, image(pic.mediaId, "Sunset over the bay"));
    await bob.waitText("conversation-preview", "📷 Photo");
    await bob.waitUnread("Alice", 3);
    await bob.open("Alice");

    // The thumbnail loads, in a box sized from the message (480×360 fits 280 wide).
    const img = page.locator(`[data-testid=message][data-seq="${photo.seq}"] [data-testid=message-image]`);
    await until(
      page,
      "the photo's thumbnail has loaded",
      (seq) => {
        const el = document.querySelector<HTMLImageElement>(`[data-testid=message][data-seq="${seq}"] [data-testid=message-image]`);
        return !!el && el.complete && el.naturalWidth > 0;
      },
      String(photo.seq),
      {
        describe: () =>
          page.evaluate(() => {
            const el = document.querySelector<HTMLImageElement>("[data-testid=message-image]");
            return el ? `src=${el.src} complete=${el.complete} natural=${el.naturalWidth}` : "(no img)";
          }),
      },
    );
    expect(await img.getAttribute("width")).toBe("280");
    expect(await img.getAttribute("height")).toBe("210");
    expect(await img.getAttribute("alt")).toBe("Sunset over the bay");
    expect(await img.getAttribute("loading")).toBe("lazy");
    const thumbNatural = await img.evaluate((el: HTMLImageElement) => [el.naturalWidth, el.naturalHeight]);
    expect(thumbNatural).toEqual([320, 240]);
    const row = page.locator(`[data-testid=message][data-seq="${photo.seq}"]`);
    expect(await row.getByTestId("message-text").textContent()).toBe("Sunset over the bay");

    // The click target opens the original through its signed URL.
    const full = await row.getByTestId("message-image-link").getAttribute("href");
    expect(full).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/media\//);
    expect(await row.getByTestId("message-image-link").getAttribute("target")).toBe("_blank");
    const original = await fetchInPage(bob, full!);
    expect(original).toMatchObject({ status: 200, length: png.length, sha256: sha256(png) });

    // The file card: name, size, and a download link with the exact bytes.
    const card = page.getByTestId("message-file");
    expect(await card.getByTestId("file-name").textContent()).toBe("minutes.txt");
    expect(await card.getByTestId("file-size").textContent()).toContain(`${notes.length} B`);
    const link = card.getByTestId("file-download");
    await until(page, "the download link has its URL", () => !!document.querySelector("[data-testid=file-download]")?.getAttribute("href"), null);
    expect(await link.getAttribute("download")).toBe("minutes.txt");
    const href = await link.getAttribute("href");
    const got = await fetchInPage(bob, href!);
    expect(got).toMatchObject({ status: 200, length: notes.length, sha256: sha256(notes) });
    expect(got.disposition).toMatch(/^attachment/);

    const shot = await screenshot(page, "media");
    expect(await distinctColours(page, shot)).toBeGreaterThan(50);
    expect(pageErrors).toEqual([]);
  });

  it("asks for new URLs once when a photo fails to load (an expired link)", async () => {
    const pic = await sdk.upload(gradientPng(300, 200, 7), "retry.png");
    // The first request for this photo fails as an expired link would.
    let hits = 0;
    await bob.page.route(
      (u) => u.pathname === `/media/${pic.mediaId}` || u.pathname.startsWith(`/media/${pic.mediaId}/`),
      async (route) => {
        hits++;
        if (hits === 1) await route.fulfill({ status: 403, contentType: "text/plain", body: "this link has expired" });
        else await route.continue();
      },
    );
    const m = await sub.send(conv, image(pic.mediaId));
    await until(
      bob.page,
      "the photo has loaded after one failure",
      (seq) => (document.querySelector<HTMLImageElement>(`[data-testid=message][data-seq="${seq}"] [data-testid=message-image]`)?.naturalWidth ?? 0) > 0,
      String(m.seq),
    );
    expect(hits).toBe(2);
    await bob.page.unrouteAll();
  });

  it("shows a recalled photo as recalled, without the photo", async () => {
    const pic = await sdk.upload(gradientPng(200, 300, 6), "tall.png");
    const m = await sub.send(conv, image(pic.mediaId));
    await until(
      bob.page,
      "the second photo has loaded",
      (seq) => (document.querySelector<HTMLImageElement>(`[data-testid=message][data-seq="${seq}"] [data-testid=message-image]`)?.naturalWidth ?? 0) > 0,
      String(m.seq),
    );
    await sub.recall(conv, m.seq);
    await until(
      bob.page,
      "the photo shows as recalled",
      (seq) => {
        const row = document.querySelector(`[data-testid=message][data-seq="${seq}"]`);
        return row?.getAttribute("data-recalled") === "true" && !row.querySelector("img") && row.textContent?.includes("Message recalled");
      },
      String(m.seq),
      { timeout: waitMs },
    );
    expect(pageErrors).toEqual([]);
  });
});
