// Signing in: one device per browser tab. The device's credentials live in
// sessionStorage, so a reload keeps the session and every other tab signs in
// as a device of its own (one device holds one stream).

import { ParleyClient, type ClientOptions, type Credentials } from "@parley/client";
import { createWebTransport } from "@parley/client/web";

const storageKey = "parley.credentials";
const channelName = "parley.devices";
// How long a starting tab waits for another tab to say it holds the same
// device (Chrome copies sessionStorage into a duplicated tab).
const claimWaitMs = 150;

const transport = createWebTransport(window.location.origin);

/** deviceName labels the session on the server, e.g. "Chrome on Linux". */
function deviceName(): string {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" : /Chrome\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Mac OS X/.test(ua) ? "macOS" : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "";
  return (os ? `${browser} on ${os}` : browser) + " (web)";
}

function options(): ClientOptions {
  return { deviceName: deviceName(), onCredentials: save };
}

/** save persists credentials after sign-in and after every token rotation. */
function save(c: Credentials): void {
  // Only the fields needed to resume; the user's Timestamp (a bigint) would
  // not survive JSON.
  const plain = { ...c, user: { id: c.user.id, username: c.user.username, displayName: c.user.displayName } };
  try {
    sessionStorage.setItem(storageKey, JSON.stringify(plain));
  } catch {
    // Storage full or disabled: the session still works until the tab closes.
  }
  claim(c.deviceId);
}

function load(): Credentials | undefined {
  try {
    const raw = sessionStorage.getItem(storageKey);
    if (!raw) return undefined;
    const c = JSON.parse(raw) as Credentials;
    if (typeof c.refreshToken !== "string" || typeof c.deviceId !== "string" || !c.user?.id) return undefined;
    if (typeof c.refreshExpiresAt === "number" && c.refreshExpiresAt <= Date.now()) return undefined;
    return c;
  } catch {
    return undefined;
  }
}

/** forget drops the tab's stored credentials. */
export function forget(): void {
  sessionStorage.removeItem(storageKey);
  held = undefined;
}

// Tabs answer "who holds device X?" for the device they hold, so a duplicated
// tab starts signed out instead of sharing (and revoking) the original's
// single-use refresh token.
let held: string | undefined;
const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(channelName) : undefined;
channel?.addEventListener("message", (ev: MessageEvent<{ type: string; deviceId: string }>) => {
  if (ev.data?.type === "who" && held !== undefined && ev.data.deviceId === held) {
    channel.postMessage({ type: "mine", deviceId: held });
  }
});

function claim(deviceId: string): void {
  held = deviceId;
}

function heldElsewhere(deviceId: string): Promise<boolean> {
  if (!channel) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onMessage = (ev: MessageEvent<{ type: string; deviceId: string }>): void => {
      if (ev.data?.type === "mine" && ev.data.deviceId === deviceId) done(true);
    };
    const timer = setTimeout(() => done(false), claimWaitMs);
    function done(v: boolean): void {
      clearTimeout(timer);
      channel!.removeEventListener("message", onMessage);
      resolve(v);
    }
    channel.addEventListener("message", onMessage);
    channel.postMessage({ type: "who", deviceId });
  });
}

/** resume returns the tab's signed-in client, or undefined when it has none. */
export async function resume(): Promise<ParleyClient | undefined> {
  const creds = load();
  if (!creds) return undefined;
  if (await heldElsewhere(creds.deviceId)) {
    sessionStorage.removeItem(storageKey);
    return undefined;
  }
  claim(creds.deviceId);
  return ParleyClient.resume(transport, creds, options());
}

/** login signs this tab in as a new device. */
export async function login(username: string, password: string): Promise<ParleyClient> {
  const client = await ParleyClient.login(transport, username, password, options());
  save(client.credentials());
  return client;
}

/** register creates an account and signs this tab in as its first device. */
export async function register(username: string, password: string, displayName: string): Promise<ParleyClient> {
  const client = await ParleyClient.register(transport, username, password, { ...options(), displayName });
  save(client.credentials());
  return client;
}
