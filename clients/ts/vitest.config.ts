import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Every test talks to a real parleyd; a shared, busy machine makes
    // timings noisy, so the limits are generous and tests wait on events.
    testTimeout: 30_000,
    hookTimeout: 90_000,
  },
});
