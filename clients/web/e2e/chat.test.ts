// The web app end to end: real parleyd serving the built app, Chromium with
// one browser context (one profile, one device) per person. The steps share
// the server and the tabs and run in order.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { ParleyClient, text } from "@parley/client";
import { createNodeTransport } from "@parley/client/node";
import { startParleyd, type Parleyd } from "../../ts/test/parleyd.ts";
import { artifactsDir, distinctColours, launchBrowser, screenshot, until, waitMs, webDir } from "./browser.ts";
import { Tab } from "./app.ts";

const password = "correct horse battery";
// Long enough that the newest page of history (50) does not hold it all.
const bulk = 60;

let server: Parleyd | undefined;
let browser: Browser | undefined;
const tabs: Tab[] = [];
const pageErrors: string[] = [];
let alice: Tab;
let bob: Tab;
let carol: Tab;
/** What the alice-bob chat must show, in order. */
const direct: string[] = [];

async function newTab(name: string, viewport = { width: 1180, height: 780 }): Promise<Tab> {
  const ctx = await browser!.newContext({ viewport });
  const page = await ctx.newPage();
  page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
  // Failed requests while the server restarts are expected console errors; a
  // Content-Security-Policy violation (parleyd sends a strict one) is not.
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) pageErrors.push(`${name}: ${msg.text()}`);
  });
  await page.goto(server!.url);
  const tab = new Tab(page, name);
  tabs.push(tab);
  return tab;
}

/** step is a test that leaves a screenshot of every tab when it fails. */
function step(name: string, fn: () => Promise<void>, timeout?: number): void {
  it(
    name,
    async ({ onTestFailed }) => {
      onTestFailed(async () => {
        const slug = name.replace(/[^a-z0-9]+/gi, "-").slice(0, 40);
        for (const t of tabs) await screenshot(t.page, `failed-${slug}-${t.name}`).catch(() => {});
      });
      await fn();
    },
    timeout,
  );
}

describe("web app", () => {
  beforeAll(async () => {
    server = await startParleyd({ webDir });
    browser = await launchBrowser();
  });

  afterAll(async () => {
    // Each one separately: a failed close must not leave the other running.
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  step("serves the app and registers two people in two tabs", async () => {
    alice = await newTab("alice");
    bob = await newTab("bob");
    await alice.page.getByTestId("auth-form").waitFor({ timeout: waitMs });
    await screenshot(alice.page, "sign-in");
    await alice.register("alice", "Alice", password);
    await bob.register("bob", "Bob", password);
    await alice.waitText("me-name", "Alice");
  });

  step("starts a direct chat by username, with a clear error for an unknown one", async () => {
    await alice.newDirect("nobody");
    await alice.waitText("new-chat-error", "There is no user named “nobody”");
    await alice.newDirect("bob");
    await alice.waitChat("Bob");
    await alice.send("Hi Bob 👋");
    direct.push("Hi Bob 👋");
    await alice.waitMessages(direct);
  });

  step("delivers live, counts unread, and shows Seen once read", async () => {
    // Bob has no chat open: the new conversation appears with a badge.
    await bob.waitUnread("Alice", 1);
    await bob.open("Alice");
    await bob.waitMessages(direct);
    await bob.waitUnread("Alice", 0);
    await alice.waitText("read-receipt", "Seen");

    // Typing shows while Bob types and goes with his message.
    await bob.page.getByTestId("composer-input").fill("Hello Alice!");
    await alice.waitText("typing-indicator", "Bob is typing…");
    await bob.page.getByTestId("composer-input").press("Enter");
    direct.push("Hello Alice!");
    await alice.waitMessages(direct);
    await bob.waitMessages(direct);
    await alice.waitGone("typing-indicator");

    // With the list showing instead of the chat, Bob's badge counts up.
    await bob.page.evaluate(() => (window.location.hash = "#/"));
    await bob.waitGone("chat-view");
    for (const t of ["Are you there?", "Lunch at noon?"]) {
      await alice.send(t);
      direct.push(t);
    }
    await alice.waitMessages(direct);
    await bob.waitUnread("Alice", 2);
    await bob.open("Alice");
    await bob.waitMessages(direct);
    await bob.waitUnread("Alice", 0);
    await alice.waitText("read-receipt", "Seen");
  });

  step("keeps the full history across a reload, paging back at the top", async () => {
    // Alice's second device (the SDK from Node) fills the chat past one page.
    const conversationId = await alice.page.getByTestId("chat-view").getAttribute("data-conversation-id");
    expect(conversationId).toBeTruthy();
    const phone = await ParleyClient.login(createNodeTransport(server!.url), "alice", password, { deviceName: "e2e node" });
    try {
      for (let i = 1; i <= bulk; i++) {
        const t = `Bulk message ${i}`;
        await phone.chat.sendMessage({ conversationId: conversationId!, clientMsgId: `bulk-${i}`, content: text(t) });
        direct.push(t);
      }
    } finally {
      await phone.logout().catch(() => {});
    }
    // Alice's tab sees her other device's messages live, as hers.
    await alice.waitMessages(direct);

    await bob.page.reload();
    await bob.waitLive();
    await bob.waitChat("Alice");
    // Scrolling to the top loads older pages until the start.
    await until(
      bob.page,
      `scrolling up shows all ${direct.length} messages`,
      (n) => {
        const list = document.querySelector("[data-testid=messages]");
        if (list) list.scrollTop = 0;
        return document.querySelectorAll("[data-testid=chat-view] [data-testid=message]").length >= n;
      },
      direct.length,
    );
    await bob.waitMessages(direct);
  });

  step("recalls a message for everyone", async () => {
    const last = alice.page.locator("[data-testid=message][data-own=true]").last();
    await last.hover();
    await last.getByTestId("recall").click();
    direct[direct.length - 1] = "Message recalled";
    await alice.waitMessages(direct);
    await bob.waitMessages(direct);
  });

  step("runs a group of three: add a member, chat, Seen by 2, leave, remove", async () => {
    carol = await newTab("carol");
    await carol.register("carol", "Carol", password);

    await alice.newGroup("Trio", ["bob"]);
    await alice.page.getByTestId("members-button").click();
    await alice.page.getByTestId("add-member-input").fill("carol");
    await alice.page.getByTestId("add-member-submit").click();
    await until(alice.page, "the group lists 3 members", () => document.querySelectorAll("[data-testid=member]").length === 3, null);
    await alice.waitText("system-message", "You added Carol");

    await bob.open("Trio");
    await bob.waitText("system-message", "Alice added Carol");
    await carol.open("Trio");

    const group: string[] = [];
    for (const [tab, t] of [
      [bob, "Hi all, Bob here"],
      [carol, "Carol says hi"],
      [alice, "Welcome to the trio"],
    ] as const) {
      await tab.send(t);
      group.push(t);
      await tab.waitMessages(group);
    }
    for (const tab of [alice, bob, carol]) await tab.waitMessages(group);
    await alice.waitText("read-receipt", "Seen by 2");
    await screenshot(alice.page, "group-with-members");
    await alice.page.getByTestId("members-button").click();

    // Carol leaves; the others see it, and the group leaves her list.
    await carol.page.getByTestId("members-button").click();
    await carol.page.getByTestId("leave-group").click();
    await carol.page.getByTestId("leave-confirm").click();
    await carol.waitGone("chat-view");
    await until(carol.page, "Trio is gone from Carol's list", () => !document.querySelector('[data-testid=conversation][data-title="Trio"]'), null);
    await alice.waitText("system-message", "Carol left");
    await bob.waitText("system-message", "Carol left");

    // The owner removes Bob, whose composer gives way to a note.
    await alice.page.getByTestId("members-button").click();
    await alice.page.locator("[data-testid=member][data-username=bob]").getByTestId("remove-member").click();
    await alice.waitText("system-message", "You removed Bob");
    await bob.waitText("system-message", "Alice removed you");
    await bob.page.getByTestId("left-note").waitFor({ timeout: waitMs });
    await alice.page.getByTestId("members-button").click();
  });

  step(
    "reconnects after a server restart with nothing lost or doubled",
    async () => {
      await alice.open("Bob");
      await bob.open("Alice");
      await alice.waitMessages(direct);
      await bob.waitMessages(direct);

      const notLive = (t: Tab) =>
        until(t.page, "the app shows it lost the connection", () => document.querySelector("[data-testid=app]")?.getAttribute("data-conn-state") !== "live", null);
      await server!.stop();
      await Promise.all([notLive(alice), notLive(bob)]);
      await alice.waitText("connection-banner", "Reconnecting…");

      // Sent while the server is down: shown as pending, committed once it is back.
      await alice.send("Sent during the outage");
      await until(alice.page, "the outage message shows as sending", () => document.querySelector("[data-testid=message][data-status=sending]") !== null, null);
      direct.push("Sent during the outage");

      await server!.restart();
      await Promise.all([alice.waitLive(45_000), bob.waitLive(45_000)]);
      await alice.waitMessages(direct);
      await bob.waitMessages(direct);

      for (const [tab, t] of [
        [bob, "Back online?"],
        [alice, "Yes, all here"],
        [bob, "Great, nothing lost"],
        [alice, "Nor doubled"],
      ] as const) {
        await tab.send(t);
        direct.push(t);
      }
      await alice.waitMessages(direct);
      await bob.waitMessages(direct);
      // After reconnecting each sees the other's presence.
      await alice.waitText("chat-subtitle", "online");
    },
    120_000,
  );

  step("writes a non-blank screenshot of the chat", async () => {
    const png = await screenshot(alice.page, "chat");
    expect(existsSync(join(artifactsDir, "chat.png"))).toBe(true);
    expect(png.length).toBeGreaterThan(10_000);
    expect(await distinctColours(alice.page, png)).toBeGreaterThan(40);
  });

  step("signs in on a phone-sized tab as another device, then logs out", async () => {
    const phone = await newTab("bob-phone", { width: 390, height: 844 });
    await phone.login("bob", password);
    await phone.open("Alice");
    await phone.waitMessages(direct);
    const png = await screenshot(phone.page, "chat-phone");
    expect(await distinctColours(phone.page, png)).toBeGreaterThan(40);

    await phone.page.getByTestId("back").click();
    await phone.page.getByTestId("logout").click();
    await phone.page.getByTestId("auth-form").waitFor({ timeout: waitMs });
    await phone.page.reload();
    await phone.page.getByTestId("auth-form").waitFor({ timeout: waitMs });
    // The first tab of Bob is a device of its own and stays signed in.
    expect(await bob.connState()).toBe("live");
  });

  step("starts a duplicated tab signed out instead of sharing the device", async () => {
    // window.open copies sessionStorage, like a browser's "Duplicate tab".
    const [copy] = await Promise.all([alice.page.waitForEvent("popup"), alice.page.evaluate(() => void window.open(window.location.href))]);
    await copy.getByTestId("auth-form").waitFor({ timeout: waitMs });
    await copy.close();
    expect(await alice.connState()).toBe("live");
  });

  step("raised no errors in any page", async () => {
    expect(pageErrors).toEqual([]);
  });
});
