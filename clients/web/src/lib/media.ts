// Signed media URLs for the components that show a message's photo or file.
// URLs are asked for when the element comes near the viewport (a long
// history does not ask for every photo at once), and asked for again when
// they expired: on an <img> error, or before a click would open a stale one.

import { onBeforeUnmount, onMounted, ref, shallowRef, type Ref } from "vue";
import type { MediaUrls } from "@parley/client";
import { Code, errorCode, errorMessage } from "./errors";
import type { ChatStore } from "./store";

// A URL about to expire is not handed to a click: the new tab would load it
// a moment later.
const clickMarginMs = 10_000;
// Start fetching URLs this far before the element scrolls into view.
const nearViewport = "600px 0px";

/** useMediaUrls loads a media's signed URLs once target comes near the viewport. */
export function useMediaUrls(store: ChatStore, mediaId: () => string, target: Ref<HTMLElement | null>) {
  const urls = shallowRef<MediaUrls>();
  const error = ref("");
  let observer: IntersectionObserver | undefined;
  let alive = true;

  async function load(refresh = false): Promise<MediaUrls | undefined> {
    try {
      const u = await store.mediaUrls(mediaId(), refresh);
      if (alive) {
        urls.value = u;
        error.value = "";
      }
      return u;
    } catch (err) {
      if (alive) {
        error.value = errorCode(err) === Code.NotFound ? "No longer available" : errorMessage(err);
      }
      return undefined;
    }
  }

  /** fresh returns URLs that stay valid for a while, asking for new ones when needed. */
  async function fresh(): Promise<MediaUrls | undefined> {
    const u = urls.value;
    if (u && u.expiresAt.getTime() - Date.now() > clickMarginMs) return u;
    return load(true);
  }

  /** usable says whether the current URLs may be handed to a click as they are. */
  function usable(): boolean {
    const u = urls.value;
    return !!u && u.expiresAt.getTime() - Date.now() > clickMarginMs;
  }

  onMounted(() => {
    const el = target.value;
    if (!el || typeof IntersectionObserver !== "function") {
      void load();
      return;
    }
    observer = new IntersectionObserver(
      (entries) => {
        if (!entries.some((e) => e.isIntersecting)) return;
        observer?.disconnect();
        observer = undefined;
        void load();
      },
      { rootMargin: nearViewport },
    );
    observer.observe(el);
  });
  onBeforeUnmount(() => {
    alive = false;
    observer?.disconnect();
  });

  return { urls, error, load, fresh, usable };
}

/** displaySize fits an image of w × h into maxW × maxH (never enlarging); a default box when the size is unknown. */
export function displaySize(w: number, h: number, maxW = 280, maxH = 320): { width: number; height: number } {
  if (w <= 0 || h <= 0) return { width: 240, height: 180 };
  const scale = Math.min(1, maxW / w, maxH / h);
  return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
}
