// Test harness: starts a real parleyd on a loopback port for the SDK's tests and
// the web app's browser tests (which import this file from ../../ts/test/parleyd.ts).
// It depends on Node built-ins only, so any test runner can use it.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** A running parleyd started by {@link startParleyd}. */
export interface Parleyd {
  /** Base URL of the client port, e.g. "http://127.0.0.1:41234". Stable across restart(). */
  url: string;
  /** SIGTERM, wait for exit (SIGKILL after 10 s). Idempotent; the data dir is kept. */
  stop(): Promise<void>;
  /** Stops the server if it runs, then starts it again on the same port with the same data dir. */
  restart(): Promise<void>;
  /** The server's data directory (fresh per startParleyd call). */
  dataDir: string;
  /**
   * Sends a signal to the running process, e.g. "SIGSTOP" to make it
   * silent without closing its connections (then "SIGCONT"). An addition to
   * the agreed shape; no-op while stopped.
   */
  kill(signal: NodeJS.Signals): void;
}

/** Options of {@link startParleyd}. */
export interface StartOptions {
  /** Extra flags, e.g. ["-access-ttl", "3s"]. */
  args?: string[];
  /** Directory served as the web app (passed as -web-dir). */
  webDir?: string;
  /** Extra environment, e.g. {PARLEY_MEDIA_URL_TTL: "4s"} for settings without a flag. */
  env?: Record<string, string>;
}

/** The repository root, three levels above this file (clients/ts/test). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

const readyTimeoutMs = 60_000;
const killAfterMs = 10_000;
const servingLine = /parleyd is serving on (http:\/\/\S+)/;
// How much of a process's output to keep for error messages.
const keepOutputBytes = 16 * 1024;

// Every process this module started and has not seen exit, so they die with
// the test process even when a test fails before calling stop().
const live = new Set<ChildProcess>();
const dataDirs = new Set<string>();
function cleanUp(): void {
  for (const p of live) p.kill("SIGKILL");
  live.clear();
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
  dataDirs.clear();
}
process.on("exit", cleanUp);
// Vitest ends its worker processes with SIGTERM, which skips "exit"
// handlers. Clean up, then re-raise the signal with this handler gone, so
// the process still ends as it would have (or as its other handlers decide).
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  const onSignal = (): void => {
    cleanUp();
    process.removeListener(sig, onSignal);
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  process.on(sig, onSignal);
}

let built: Promise<string> | undefined;

/**
 * Returns the parleyd binary: $PARLEYD_BIN when set, else builds
 * <repo>/.tmp/ts-test/parleyd once per process. Test files run in separate
 * workers, so the build goes to a unique temporary name and is renamed into
 * place: a concurrent worker never executes a half-written file.
 */
export function parleydBinary(): Promise<string> {
  const fromEnv = process.env.PARLEYD_BIN;
  if (fromEnv) return Promise.resolve(fromEnv);
  built ??= buildParleyd();
  return built;
}

async function buildParleyd(): Promise<string> {
  const outDir = join(repoRoot, ".tmp", "ts-test");
  mkdirSync(outDir, { recursive: true });
  const bin = join(outDir, "parleyd");
  const tmp = `${bin}.${process.pid}.${Date.now()}`;
  const { code, output } = await run("go", ["build", "-o", tmp, "./server/cmd/parleyd"], repoRoot);
  if (code !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`parleyd harness: "go build -o ${tmp} ./server/cmd/parleyd" in ${repoRoot} failed (exit ${code}):\n${output}`);
  }
  renameSync(tmp, bin);
  return bin;
}

/**
 * Starts parleyd on 127.0.0.1 with a fresh data dir and an admin port of its
 * own, and resolves once it prints its "serving on" line. Rejects with the
 * server's stderr if it exits first or is not ready within 60 s.
 */
export async function startParleyd(opts: StartOptions = {}): Promise<Parleyd> {
  const bin = await parleydBinary();
  const dataDir = mkdtempSync(join(tmpdir(), "parleyd-test-"));
  dataDirs.add(dataDir);
  const flags = (listen: string): string[] => {
    const f = ["-listen", listen, "-admin-listen", "127.0.0.1:0", "-data-dir", dataDir];
    if (opts.webDir !== undefined) f.push("-web-dir", opts.webDir);
    return f.concat(opts.args ?? []);
  };

  const env = { ...process.env, ...opts.env };
  let proc: Running = await launch(bin, flags("127.0.0.1:0"), env);
  const url = proc.url;
  const hostPort = new URL(url).host;
  const stop = (): Promise<void> => proc.stop();
  const restart = async (): Promise<void> => {
    await proc.stop();
    // The old process's connections may briefly hold the port; retry the bind
    // for a few seconds rather than fail a test on a kernel race.
    const deadline = Date.now() + 5_000;
    for (;;) {
      try {
        proc = await launch(bin, flags(hostPort), env);
        return;
      } catch (err) {
        if (!(err instanceof Error && /address already in use/.test(err.message)) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  return { url, dataDir, stop, restart, kill: (sig) => proc.kill(sig) };
}

interface Running {
  url: string;
  stop(): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

function launch(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<Running> {
  const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  const exited = new Promise<void>((res) => {
    child.once("exit", () => {
      live.delete(child);
      res();
    });
  });
  let stderr = "";
  let stdout = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    if (process.env.PARLEYD_LOG) process.stderr.write(chunk);
    stderr = (stderr + chunk).slice(-keepOutputBytes);
  });
  child.stdout!.setEncoding("utf8");

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    // A stopped process (kill("SIGSTOP")) would keep SIGTERM pending.
    child.kill("SIGCONT");
    const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    await exited;
    clearTimeout(timer);
  };

  return new Promise<Running>((resolveReady, rejectReady) => {
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      rejectReady(new Error(`parleyd harness: ${bin} ${args.join(" ")}: ${why}\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    };
    const timer = setTimeout(() => fail(`not serving within ${readyTimeoutMs / 1000} s`), readyTimeoutMs);
    child.once("error", (err) => fail(`could not start: ${err.message}`));
    child.once("exit", (code, signal) => fail(`exited before serving (code ${code}, signal ${signal})`));
    child.stdout!.on("data", (chunk: string) => {
      if (settled) return;
      stdout = (stdout + chunk).slice(-keepOutputBytes);
      const m = servingLine.exec(stdout);
      if (m) {
        settled = true;
        clearTimeout(timer);
        resolveReady({ url: m[1]!, stop, kill: (sig) => void (child.exitCode === null && child.signalCode === null && child.kill(sig)) });
      }
    });
  });
}

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; output: string }> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (output += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (output += c));
    child.once("error", (err) => rej(new Error(`parleyd harness: could not run ${cmd}: ${err.message}`)));
    child.once("close", (code) => res({ code: code ?? -1, output }));
  });
}
