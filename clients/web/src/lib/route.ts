// A hash route: "#/" is the conversation list, "#/c/<id>" a conversation.
// parleyd serves index.html for unknown paths too, but a hash survives
// reloads without asking anything of the server.

import { ref } from "vue";

function parse(hash: string): string | null {
  const m = /^#\/c\/([^/?#]+)/.exec(hash);
  return m ? decodeURIComponent(m[1]!) : null;
}

/** openConversation is the conversation the address names, or null. */
export const openConversation = ref<string | null>(parse(window.location.hash));

window.addEventListener("hashchange", () => {
  openConversation.value = parse(window.location.hash);
});

/** go shows a conversation (or the list, for null) and records it in the address. */
export function go(conversationId: string | null): void {
  const hash = conversationId ? `#/c/${encodeURIComponent(conversationId)}` : "#/";
  if (window.location.hash !== hash) window.location.hash = hash;
  openConversation.value = conversationId;
}
