// Sending photos and files from the browser: Alice picks files with the
// composer's attach button (the hidden <input type=file>), the app uploads
// them with UploadPart over fetch and sends an image or a file message; Bob's
// tab shows the thumbnail and a file card whose link downloads the exact
// bytes. Also: a file over the server's limit (a toast with the server's
// words) and cancelling an upload halfway.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Route } from "playwright-core";
import { startParleyd, type Parleyd } from "../../ts/test/parleyd.ts";
import { gradientPng } from "../../ts/test/png.ts";
import { distinctColours, launchBrowser, screenshot, until, waitMs, webDir } from "./browser.ts";
import { Tab } from "./app.ts";

const password = "correct horse battery";
// A small server limit, so "too large" needs only a few MiB.
const maxSize = 3 * 1024 * 1024;

let server: Parleyd | undefined;
let browser: Browser | undefined;
const tabs: Tab[] = [];
const pageErrors: string[] = [];
let alice: Tab;
let bob: Tab;
const png = gradientPng(640, 420, 9);
const notes = new TextEncoder().encode("Shopping list\n- bread\n- olives\n- 2 lemons\n");

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

async function newTab(name: string): Promise<Tab> {
  const ctx = await browser!.newContext({ viewport: { width: 1180, height: 780 } });
  const page = await ctx.newPage();
  page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) pageErrors.push(`${name}: ${msg.text()}`);
  });
  await page.goto(server!.url);
  const tab = new Tab(page, name);
  tabs.push(tab);
  return tab;
}

/** step is a test that leaves a screenshot of every tab when it fails. */
function step(name: string, fn: () => Promise<void>): void {
  it(name, async ({ onTestFailed }) => {
    onTestFailed(async () => {
      const slug = name.replace(/[^a-z0-9]+/gi, "-").slice(0, 40);
      for (const t of tabs) await screenshot(t.page, `failed-upload-${slug}-${t.name}`).catch(() => {});
    });
    await fn();
  });
}

/** pick chooses a file in Alice's composer, as the attach button's dialog would. */
async function pick(name: string, mimeType: string, bytes: Uint8Array): Promise<void> {
  await alice.page.getByTestId("file-input").setInputFiles({ name, mimeType, buffer: Buffer.from(bytes) });
}

/** fetchInPage fetches url from the page and returns the body's SHA-256 and length. */
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

describe("sending photos and files from the browser", () => {
  beforeAll(async () => {
    server = await startParleyd({ webDir, env: { PARLEY_MEDIA_MAX_SIZE: String(maxSize) } });
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  step("sends a picked photo with the typed text as caption; the peer sees the thumbnail", async () => {
    alice = await newTab("alice");
    bob = await newTab("bob");
    await alice.register("alice", "Alice", password);
    await bob.register("bob", "Bob", password);
    await alice.newDirect("bob");
    await alice.waitChat("Bob");

    await alice.page.getByTestId("composer-input").fill("The bay at dusk");
    await pick("bay.png", "image/png", png);
    // The caption went with the photo.
    expect(await alice.page.getByTestId("composer-input").inputValue()).toBe("");

    await bob.waitUnread("Alice", 1);
    await bob.open("Alice");
    await until(
      bob.page,
      "the photo's thumbnail has loaded",
      () => {
        const el = document.querySelector<HTMLImageElement>("[data-testid=message] [data-testid=message-image]");
        return !!el && el.complete && el.naturalWidth > 0;
      },
      null,
      {
        describe: () =>
          bob.page.evaluate(() => {
            const el = document.querySelector<HTMLImageElement>("[data-testid=message-image]");
            return el ? `src=${el.src} complete=${el.complete} natural=${el.naturalWidth}` : "(no img)";
          }),
      },
    );
    const img = bob.page.getByTestId("message-image");
    expect(await img.getAttribute("alt")).toBe("The bay at dusk");
    expect(await img.evaluate((el: HTMLImageElement) => [el.naturalWidth, el.naturalHeight])).toEqual([320, 210]);
    const row = bob.page.locator("[data-testid=message]", { has: img });
    expect(await row.getByTestId("message-text").textContent()).toBe("The bay at dusk");
    // The original behind the thumbnail is Alice's file, byte for byte.
    const full = await row.getByTestId("message-image-link").getAttribute("href");
    expect(await fetchInPage(bob, full!)).toMatchObject({ status: 200, length: png.length, sha256: sha256(png) });

    // Alice's own tab shows it too, and no upload is left over.
    await until(alice.page, "Alice sees her photo", () => (document.querySelector<HTMLImageElement>("[data-testid=message-image]")?.naturalWidth ?? 0) > 0, null);
    expect(await alice.page.getByTestId("upload").count()).toBe(0);

    const shot = await screenshot(bob.page, "upload-photo");
    expect(await distinctColours(bob.page, shot)).toBeGreaterThan(50);
  });

  step("sends a picked text file as a file whose link downloads the exact bytes", async () => {
    await pick("shopping.txt", "text/plain", notes);
    const card = bob.page.getByTestId("message-file");
    await card.waitFor({ timeout: waitMs });
    expect(await card.getByTestId("file-name").textContent()).toBe("shopping.txt");
    await until(bob.page, "the download link has its URL", () => !!document.querySelector("[data-testid=file-download]")?.getAttribute("href"), null);
    const link = card.getByTestId("file-download");
    expect(await link.getAttribute("download")).toBe("shopping.txt");
    const got = await fetchInPage(bob, (await link.getAttribute("href"))!);
    expect(got).toMatchObject({ status: 200, length: notes.length, sha256: sha256(notes) });
    expect(got.disposition).toMatch(/^attachment/);
  });

  step("says why a file over the server's limit was refused", async () => {
    await pick("huge.bin", "application/octet-stream", new Uint8Array(maxSize + 1));
    await alice.waitText("toast", `Couldn't send huge.bin: Header.size_bytes: ${maxSize + 1} bytes exceeds this server's limit of ${maxSize}`);
    expect(await alice.page.getByTestId("upload").count()).toBe(0);
    await alice.page.getByTestId("toast").getByRole("button", { name: "Dismiss" }).click();
    await alice.waitGone("toast");
  });

  step("shows an upload's progress and cancels it", async () => {
    // Every chunk after the first is held until the upload is cancelled.
    const held: Route[] = [];
    let parts = 0;
    await alice.page.route("**/parley.v1.MediaService/UploadPart", async (route) => {
      if (parts++ === 0) return route.continue();
      held.push(route);
    });
    const data = new Uint8Array(maxSize - 1).map((_, i) => (i * 31) % 256);
    await pick("movie.bin", "application/octet-stream", data);
    const bar = alice.page.getByTestId("upload-progress");
    await until(
      alice.page,
      "the first MiB is acknowledged",
      () => (document.querySelector<HTMLProgressElement>("[data-testid=upload-progress]")?.value ?? 0) >= 1024 * 1024,
      null,
    );
    expect(await bar.getAttribute("max")).toBe(String(data.length));
    expect(await alice.page.getByTestId("upload-name").textContent()).toBe("movie.bin");
    await screenshot(alice.page, "upload-progress");
    await alice.page.getByTestId("upload-cancel").click();
    await alice.waitGone("upload");
    for (const r of held) await r.continue().catch(() => {});
    await alice.page.unrouteAll();
    // Nothing was sent, and a cancel is no error.
    expect(await alice.page.getByTestId("toast").count()).toBe(0);
    expect(await alice.page.locator("[data-testid=message-file]").count()).toBe(1);
    expect(pageErrors).toEqual([]);
  });
});
