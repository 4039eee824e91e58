// Sessions outlive their access tokens: with a short access-token lifetime
// the SDK rotates the tokens under the app, which must persist each new set,
// so a reload after a rotation resumes (a spent refresh token would revoke
// the device).
import { afterAll, beforeAll, describe, it } from "vitest";
import type { Browser } from "playwright-core";
import { startParleyd, type Parleyd } from "../../ts/test/parleyd.ts";
import { launchBrowser, until, webDir } from "./browser.ts";
import { Tab } from "./app.ts";

const password = "correct horse battery";

let server: Parleyd | undefined;
let browser: Browser | undefined;

function storedRefreshToken(tab: Tab): Promise<string> {
  return tab.page.evaluate(() => (JSON.parse(sessionStorage.getItem("parley.credentials") ?? "{}") as { refreshToken?: string }).refreshToken ?? "");
}

describe("session", () => {
  beforeAll(async () => {
    // Access tokens that expire while the test runs.
    server = await startParleyd({ webDir, args: ["-access-ttl", "6s"] });
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  it("keeps working, and resumes after a reload, across token rotations", async () => {
    const open = async (name: string): Promise<Tab> => {
      const page = await (await browser!.newContext()).newPage();
      await page.goto(server!.url);
      return new Tab(page, name);
    };
    const alice = await open("alice");
    const bob = await open("bob");
    await alice.register("alice", "Alice", password);
    await bob.register("bob", "Bob", password);
    await alice.newDirect("bob");
    await alice.waitChat("Bob");
    await alice.send("before the rotation");
    await alice.waitMessages(["before the rotation"]);

    // Once the access token has expired, the next call (this send) makes
    // the SDK refresh first, however early it would refresh by itself.
    const first = await storedRefreshToken(alice);
    await until(alice.page, "the stored access token has expired (or was already replaced)", (t) => {
      const c = JSON.parse(sessionStorage.getItem("parley.credentials") ?? "{}") as { accessExpiresAt?: number; refreshToken?: string };
      return c.refreshToken !== t || (!!c.accessExpiresAt && Date.now() > c.accessExpiresAt + 200);
    }, first);
    await alice.send("after the rotation");
    await alice.waitMessages(["before the rotation", "after the rotation"]);
    await until(alice.page, "the stored refresh token was rotated", (t) => {
      const c = JSON.parse(sessionStorage.getItem("parley.credentials") ?? "{}") as { refreshToken?: string };
      return !!c.refreshToken && c.refreshToken !== t;
    }, first);

    await alice.page.reload();
    await alice.waitLive();
    await alice.waitChat("Bob");
    await alice.send("after a reload");
    const all = ["before the rotation", "after the rotation", "after a reload"];
    await alice.waitMessages(all);
    await bob.open("Alice");
    await bob.waitMessages(all);
  });
});
