import { defineConfig } from "vitest/config";

// `npm test -w @parley/web`: the browser tests in e2e/, against a real
// parleyd serving the built app (dist/) and Debian's Chromium.
export default defineConfig({
  test: {
    include: ["e2e/**/*.test.ts"],
    globalSetup: ["e2e/global-setup.ts"],
    // One file at a time: each starts its own parleyd and Chromium, and the
    // machine may have two cores.
    fileParallelism: false,
    // A shared, busy machine makes timings noisy: generous limits, and the
    // tests wait on DOM conditions instead of sleeping.
    testTimeout: 90_000,
    hookTimeout: 120_000,
  },
});
