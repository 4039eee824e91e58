import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ParleyClient } from "../src/client.js";
import { ParleyAuthError } from "../src/errors.js";
import type { Credentials } from "../src/tokens.js";
import { createNodeTransport } from "../src/node.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { newUser, password, record, uniqueName, waitFor } from "./helpers.js";

// Access tokens live 2 s here, so tests can outlive them without waiting long.
const accessTtlMs = 2_000;

let srv: Parleyd;
beforeAll(async () => {
  srv = await startParleyd({ args: ["-access-ttl", `${accessTtlMs / 1000}s`] });
});
afterAll(async () => {
  await srv?.stop();
});

// Waits (by polling the clock, not sleeping blindly) until an access token is
// past its expiry by more than the server's whole-second granularity.
function untilExpired(c: Credentials): Promise<true> {
  return waitFor("the access token to expire", () => Date.now() > c.accessExpiresAt + 1_000 || undefined, accessTtlMs + 5_000);
}

describe.concurrent("auth", () => {
  it("registers, logs in and resumes with the same user", async () => {
    const t = createNodeTransport(srv.url);
    const username = uniqueName("reg");
    const saved: Credentials[] = [];
    const reg = await ParleyClient.register(t, username, password, { displayName: "Reg User", deviceName: "laptop", onCredentials: (c) => saved.push(c) });
    expect(reg.user).toEqual({ id: reg.userId, username, displayName: "Reg User" });
    expect(saved).toHaveLength(1);
    // Credentials survive JSON, as the web app keeps them in sessionStorage.
    const creds = JSON.parse(JSON.stringify(reg.credentials())) as Credentials;
    expect(creds).toEqual(reg.credentials());
    expect(creds.accessExpiresAt).toBeGreaterThan(Date.now());

    const login = await ParleyClient.login(t, username, password, { deviceName: "phone" });
    expect(login.userId).toBe(reg.userId);
    expect(login.deviceId).not.toBe(reg.deviceId);

    const resumed = ParleyClient.resume(t, creds);
    expect((await resumed.lookupUser(username)).id).toBe(reg.userId);
  });

  it("refreshes ahead of expiry, once for concurrent calls", async () => {
    const t = createNodeTransport(srv.url);
    const c = await newUser(t, "early");
    const before = c.credentials();
    // Resumed credentials whose token expires within the skew.
    const rotations: Credentials[] = [];
    const resumed = ParleyClient.resume(t, before, { refreshSkewMs: 60_000, onCredentials: (x) => rotations.push(x) });
    const users = await Promise.all(Array.from({ length: 5 }, () => resumed.lookupUser(c.user.username)));
    expect(users.map((u) => u.id)).toEqual(Array(5).fill(c.userId));
    expect(rotations).toHaveLength(1);
    expect(resumed.credentials().refreshToken).not.toBe(before.refreshToken);
    // The new token lives 2 s: the skew is capped at half of that, so the
    // next call does not refresh again.
    await resumed.lookupUser(c.user.username);
    expect(rotations).toHaveLength(1);
  });

  it("refreshes and retries a call the server rejects as expired, once for concurrent calls", async () => {
    const t = createNodeTransport(srv.url);
    const c = await newUser(t, "late");
    await untilExpired(c.credentials());
    // A client whose clock runs behind believes the token is still good, so
    // only the server's "expired" answer can tell it.
    const rotations: Credentials[] = [];
    const skewed = ParleyClient.resume(t, { ...c.credentials(), accessExpiresAt: Date.now() + 3_600_000 }, { onCredentials: (x) => rotations.push(x) });
    const users = await Promise.all(Array.from({ length: 5 }, () => skewed.lookupUser(c.user.username)));
    expect(users.map((u) => u.id)).toEqual(Array(5).fill(c.userId));
    expect(rotations).toHaveLength(1);
    // The rotated refresh token still works: no refresh token was presented twice.
    await skewed.refresh();
    expect(rotations).toHaveLength(2);
  });

  it("reopens a subscription whose token expired", async () => {
    const t = createNodeTransport(srv.url);
    const c = await newUser(t, "subexp");
    await untilExpired(c.credentials());
    const skewed = ParleyClient.resume(t, { ...c.credentials(), accessExpiresAt: Date.now() + 3_600_000 });
    const r = record(skewed);
    try {
      // The first attempt is refused as expired; the next one carries a fresh token.
      const dis = await r.next("disconnected");
      expect(dis.error.code).toBe(Code.Unauthenticated);
      await r.next("synced");
      expect(skewed.credentials().accessToken).not.toBe(c.credentials().accessToken);
    } finally {
      await r.sub.close();
    }
  });

  it("ends the session on logout: calls reject with ParleyAuthError and subscriptions close", async () => {
    const c = await newUser(createNodeTransport(srv.url), "bye");
    const creds = c.credentials();
    const r = record(c);
    await r.next("synced");
    await c.logout();
    const closed = await r.next("closed");
    expect(closed.error).toBeInstanceOf(ParleyAuthError);
    expect(r.sub.state).toBe("closed");
    await expect(c.lookupUser(c.user.username)).rejects.toBeInstanceOf(ParleyAuthError);
    await expect(r.sub.send("any", "hi")).rejects.toBeInstanceOf(ParleyAuthError);
    // The server revoked the device too: its saved credentials are useless.
    const again = ParleyClient.resume(createNodeTransport(srv.url), creds);
    const err = await again.lookupUser(c.user.username).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParleyAuthError);
    expect((err as ParleyAuthError).cause?.code).toBe(Code.Unauthenticated);
    await expect(again.refresh()).rejects.toBeInstanceOf(ParleyAuthError);
  });

  it("ends the session when a spent refresh token is presented again", async () => {
    const t = createNodeTransport(srv.url);
    const c = await newUser(t, "reuse", { refreshSkewMs: 0 });
    const stale = c.credentials();
    await c.refresh();
    const copy = ParleyClient.resume(t, stale, { refreshSkewMs: 0 });
    const err = await copy.refresh().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParleyAuthError);
    expect((err as ParleyAuthError).cause?.rawMessage).toMatch(/reuse/);
    // The server revoked the device, so the legitimate holder is out too.
    await expect(c.lookupUser(c.user.username)).rejects.toBeInstanceOf(ParleyAuthError);
  });

  it("reports wrong passwords and bad input as ConnectErrors", async () => {
    const t = createNodeTransport(srv.url);
    const wrong = await ParleyClient.login(t, uniqueName("nobody"), password).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(ConnectError);
    expect((wrong as ConnectError).code).toBe(Code.Unauthenticated);
    const bad = await ParleyClient.register(t, "UPPER case", password).catch((e: unknown) => e);
    expect((bad as ConnectError).code).toBe(Code.InvalidArgument);
    expect((bad as ConnectError).rawMessage).toMatch(/username/);
    const short = await ParleyClient.register(t, uniqueName("short"), "pw").catch((e: unknown) => e);
    expect((short as ConnectError).code).toBe(Code.InvalidArgument);
    expect((short as ConnectError).rawMessage).toMatch(/password/);
  });
});
