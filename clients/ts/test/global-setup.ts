// Builds parleyd once for the whole run (each test file runs in its own
// worker, and every worker would otherwise link its own binary) and hands the
// path to the workers through PARLEYD_BIN.
import { parleydBinary } from "./parleyd.js";

export default async function setup(): Promise<void> {
  process.env.PARLEYD_BIN = await parleydBinary();
}
