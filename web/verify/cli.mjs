// Runs the page's verifier under Node (which has fetch and WebCrypto), for developers:
//   node web/verify/cli.mjs RECEIPT.json [--rpc URL] [--driver ADDRESS] [--contract ADDRESS]
//        [--card TAG:SALT]... [--log-window BLOCKS] [--confirmations N]
// prints the checks and the verdict as JSON lines. The page itself needs no Node.
import { readFileSync } from "node:fs";

import { readReceipt, verifyReceipt } from "./src/verifier.js";

const [file, ...rest] = process.argv.slice(2);
const options = {};
const cards = [];
for (let i = 0; i < rest.length; i += 2) {
  const name = rest[i].replace(/^--/, "");
  if (name === "card") {
    const at = rest[i + 1].lastIndexOf(":");
    cards.push([rest[i + 1].slice(0, at), rest[i + 1].slice(at + 1)]);
  } else {
    options[name] = rest[i + 1];
  }
}
// UTF-8 as csms verify reads a receipt file: bytes that are no UTF-8 are no receipt
const text = new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(file));
const verdict = await verifyReceipt(readReceipt(text), {
  rpcUrl: options.rpc ?? null, driver: options.driver ?? null, contract: options.contract ?? null,
  cards, logWindow: options["log-window"] ?? null, confirmations: options.confirmations ?? null,
});
for (const c of verdict.checks) console.log(JSON.stringify(c));
console.log(JSON.stringify({ status: verdict.status, proves: verdict.proves }));
