// Browser helpers for the e2e tests: Chromium through playwright-core, and
// waits on DOM conditions that say what they waited for when they time out.
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";

/** A function run in the page with a serialisable argument. */
type PageFunction<A, R> = (arg: A) => R;

const here = dirname(fileURLToPath(import.meta.url));

/** webDir is the built app parleyd serves in the tests. */
export const webDir = resolve(here, "../dist");
/** artifactsDir receives screenshots (git-ignored). */
export const artifactsDir = join(here, "artifacts");
/** chromiumPath is the browser binary: $CHROMIUM_PATH or Debian's. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** How long a DOM condition may take to hold; the machine is shared and busy. */
export const waitMs = 20_000;

/** launchBrowser starts a headless Chromium; each context it makes has a fresh profile. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Background tabs must keep their timers: each test page is "visible".
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
    ],
  });
}

/**
 * until waits for fn (run in the page) to return a truthy value and returns
 * it. On timeout it fails with what, and with describe's view of the page.
 */
export async function until<A, R>(
  page: Page,
  what: string,
  fn: PageFunction<A, R>,
  arg: A,
  opts: { timeout?: number; describe?: () => Promise<string> } = {},
): Promise<R> {
  try {
    // playwright's own PageFunction types the argument as Unboxed<A>; ours are plain data.
    const handle = await page.waitForFunction(fn as (arg: unknown) => R, arg as unknown, { timeout: opts.timeout ?? waitMs, polling: 100 });
    return (await handle.jsonValue()) as R;
  } catch (err) {
    let state = "";
    try {
      state = opts.describe ? await opts.describe() : "";
    } catch {
      // The page may be gone.
    }
    throw new Error(`${pageName(page)}: timed out waiting until ${what}${state ? `\n  page: ${state}` : ""}\n  (${String(err).split("\n")[0]})`);
  }
}

const names = new WeakMap<Page, string>();

/** nameOf labels a page in failure messages. */
export function nameOf(page: Page, name: string): void {
  names.set(page, name);
}

function pageName(page: Page): string {
  return names.get(page) ?? "page";
}

/** screenshot writes the page to artifacts/<name>.png and returns the PNG. */
export async function screenshot(page: Page, name: string): Promise<Buffer> {
  mkdirSync(artifactsDir, { recursive: true });
  return page.screenshot({ path: join(artifactsDir, `${name}.png`) });
}

/**
 * distinctColours decodes a PNG in the page (with a canvas) and counts the
 * distinct colours among a grid of sampled pixels: a blank or single-colour
 * capture has one or two.
 */
export async function distinctColours(page: Page, png: Buffer): Promise<number> {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    if (!ctx) return 0;
    ctx.drawImage(img, 0, 0);
    const seen = new Set<number>();
    const step = 4;
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let y = 0; y < canvas.height; y += step) {
      for (let x = 0; x < canvas.width; x += step) {
        const i = (y * canvas.width + x) * 4;
        seen.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
      }
    }
    return seen.size;
  }, png.toString("base64"));
}
