// Checks what the browser tests need before any worker starts: the built app,
// a Chromium, and the parleyd binary (built once, handed to the test files
// through PARLEYD_BIN like the SDK's tests do).
import { existsSync } from "node:fs";
import { parleydBinary } from "../../ts/test/parleyd.ts";
import { chromiumPath, webDir } from "./browser.ts";

export default async function setup(): Promise<void> {
  if (!existsSync(`${webDir}/index.html`)) {
    throw new Error(
      `web e2e: ${webDir}/index.html is missing: build the app first with\n` +
        `  cd clients && npm run build -w @parley/client && npm run build -w @parley/web`,
    );
  }
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `web e2e: no Chromium at ${chromiumPath}: install Debian's with\n  apt-get update && apt-get install -y chromium\n` +
        `or point CHROMIUM_PATH at one.`,
    );
  }
  process.env.PARLEYD_BIN = await parleydBinary();
}
