import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// The API parleyd serves next to the app; `vite dev` forwards it to a parleyd
// started with `make run` so the page can keep talking to its own origin.
const api = process.env.PARLEY_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [vue()],
  server: {
    host: "127.0.0.1",
    port: 5173,
    strictPort: true,
    proxy: {
      "/parley.v1.": { target: api, changeOrigin: false },
      "/grpc.": { target: api, changeOrigin: false },
      "/media/": { target: api, changeOrigin: false },
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
  },
});
