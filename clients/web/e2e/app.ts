// A signed-in browser tab of the app, driven the way a person uses it:
// through labelled fields, buttons and the keyboard.
import type { Page } from "playwright-core";
import { nameOf, until, waitMs } from "./browser.ts";

/** What a message row shows: its status ("confirmed", "sending", "failed") and text. */
export interface Row {
  status: string;
  text: string;
}

export class Tab {
  constructor(
    readonly page: Page,
    readonly name: string,
  ) {
    nameOf(page, name);
  }

  /** register creates an account from the sign-up form. */
  async register(username: string, displayName: string, password: string): Promise<void> {
    const p = this.page;
    await p.getByTestId("auth-tab-register").click();
    await p.getByTestId("auth-username").fill(username);
    await p.getByTestId("auth-display-name").fill(displayName);
    await p.getByTestId("auth-password").fill(password);
    await p.getByTestId("auth-submit").click();
    await this.waitLive();
  }

  /** login signs in from the log-in form. */
  async login(username: string, password: string): Promise<void> {
    const p = this.page;
    await p.getByTestId("auth-tab-login").click();
    await p.getByTestId("auth-username").fill(username);
    await p.getByTestId("auth-password").fill(password);
    await p.getByTestId("auth-submit").click();
    await this.waitLive();
  }

  /** waitLive waits until the app shows a live connection (no banner). */
  async waitLive(timeout = waitMs): Promise<void> {
    await until(
      this.page,
      "the connection is live",
      () => document.querySelector("[data-testid=app]")?.getAttribute("data-conn-state") === "live",
      null,
      {
        timeout,
        describe: async () =>
          this.page.evaluate(
            () =>
              `state=${document.querySelector("[data-testid=app]")?.getAttribute("data-conn-state") ?? "(no app)"} ` +
              `banner=${document.querySelector("[data-testid=connection-banner]")?.textContent ?? ""} ` +
              `error=${document.querySelector("[role=alert]")?.textContent ?? ""}`,
          ),
      },
    );
  }

  /** connState is the app's connection state attribute. */
  connState(): Promise<string | null> {
    return this.page.evaluate(() => document.querySelector("[data-testid=app]")?.getAttribute("data-conn-state") ?? null);
  }

  /** newDirect opens the new-chat dialog and asks for a direct chat with username. */
  async newDirect(username: string): Promise<void> {
    const p = this.page;
    if (!(await p.getByTestId("new-chat-dialog").isVisible())) await p.getByTestId("new-chat").click();
    await p.getByTestId("tab-direct").click();
    await p.getByTestId("direct-username").fill(username);
    await p.getByTestId("direct-username").press("Enter");
  }

  /** newGroup creates a group with members picked by username. */
  async newGroup(title: string, usernames: string[]): Promise<void> {
    const p = this.page;
    await p.getByTestId("new-chat").click();
    await p.getByTestId("tab-group").click();
    await p.getByTestId("group-title").fill(title);
    for (const u of usernames) {
      await p.getByTestId("group-member-input").fill(u);
      await p.getByTestId("group-member-input").press("Enter");
      await p.locator(`[data-testid=member-chip]`, { hasText: new RegExp(u, "i") }).waitFor({ timeout: waitMs });
    }
    await p.getByTestId("group-submit").click();
    await this.waitChat(title);
  }

  /** waitChat waits until the open chat is titled title. */
  async waitChat(title: string): Promise<void> {
    await until(
      this.page,
      `the chat with "${title}" is open`,
      (t) => document.querySelector("[data-testid=chat-title]")?.textContent === t,
      title,
      { describe: () => this.page.evaluate(() => `title=${document.querySelector("[data-testid=chat-title]")?.textContent ?? "(none)"}`) },
    );
  }

  /** open clicks a conversation in the list. */
  async open(title: string): Promise<void> {
    await this.page.locator(`[data-testid=conversation][data-title="${title}"]`).click();
    await this.waitChat(title);
  }

  /** send types text in the composer and presses Enter. */
  async send(text: string): Promise<void> {
    const input = this.page.getByTestId("composer-input");
    await input.fill(text);
    await input.press("Enter");
  }

  /** rows are the open chat's message rows, oldest first. */
  rows(): Promise<Row[]> {
    return this.page.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>("[data-testid=chat-view] [data-testid=message]")].map((el) => ({
        status: el.dataset.status ?? "",
        text: el.querySelector("[data-testid=message-text]")?.textContent ?? "",
      })),
    );
  }

  /**
   * waitMessages waits until the open chat shows exactly texts, in order, all
   * confirmed by the server: nothing missing, nothing twice, nothing pending.
   */
  async waitMessages(texts: string[], timeout = waitMs): Promise<void> {
    await until(
      this.page,
      `the chat shows exactly ${texts.length} confirmed messages ending "${texts[texts.length - 1]}"`,
      (want) => {
        const got = [...document.querySelectorAll<HTMLElement>("[data-testid=chat-view] [data-testid=message]")];
        return (
          got.length === want.length &&
          got.every((el, i) => el.dataset.status === "confirmed" && el.querySelector("[data-testid=message-text]")?.textContent === want[i])
        );
      },
      texts,
      { timeout, describe: async () => JSON.stringify((await this.rows()).map((r) => (r.status === "confirmed" ? r.text : `${r.text} (${r.status})`))) },
    );
  }

  /** unread is the unread badge of a conversation in the list (0 without one). */
  async waitUnread(title: string, n: number): Promise<void> {
    await until(
      this.page,
      `"${title}" shows ${n} unread`,
      ([t, want]) => {
        const row = document.querySelector(`[data-testid=conversation][data-title="${t}"]`);
        if (!row) return false;
        const badge = row.querySelector("[data-testid=unread-badge]")?.textContent?.trim() ?? "0";
        return badge === String(want);
      },
      [title, n] as const,
      {
        describe: () =>
          this.page.evaluate(() =>
            [...document.querySelectorAll<HTMLElement>("[data-testid=conversation]")]
              .map((el) => `${el.dataset.title}: ${el.querySelector("[data-testid=unread-badge]")?.textContent ?? "0"}`)
              .join(", "),
          ),
      },
    );
  }

  /** waitText waits for an element with a test id to show text (a substring). */
  async waitText(testId: string, text: string, timeout = waitMs): Promise<void> {
    await until(
      this.page,
      `[data-testid=${testId}] shows "${text}"`,
      ([id, t]) => [...document.querySelectorAll(`[data-testid=${id}]`)].some((el) => el.textContent?.includes(t)),
      [testId, text] as const,
      {
        timeout,
        describe: () =>
          this.page.evaluate((id) => JSON.stringify([...document.querySelectorAll(`[data-testid=${id}]`)].map((el) => el.textContent?.trim())), testId),
      },
    );
  }

  /** waitGone waits until no element with the test id is shown. */
  async waitGone(testId: string): Promise<void> {
    await until(this.page, `[data-testid=${testId}] is gone`, (id) => document.querySelector(`[data-testid=${id}]`) === null, testId);
  }
}
