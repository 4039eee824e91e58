import { afterAll, describe, expect, it } from "vitest";
import { startParleyd, type Parleyd } from "./parleyd.js";

describe("parleyd harness", () => {
  let srv: Parleyd | undefined;
  afterAll(async () => srv?.stop());

  it("starts, stops and restarts on the same port", async () => {
    srv = await startParleyd();
    expect(srv.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = async () => (await fetch(`${srv!.url}/parley.v1.AuthService/Login`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status;
    expect(await health()).toBe(400);

    await srv.stop();
    await expect(health()).rejects.toThrow();
    await srv.restart();
    expect(await health()).toBe(400);
  });

  it("fails clearly when the server cannot start", async () => {
    await expect(startParleyd({ args: ["-no-such-flag"] })).rejects.toThrow(/exited before serving[\s\S]*no-such-flag/);
  });
});
