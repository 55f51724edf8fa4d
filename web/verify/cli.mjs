// Runs the page's verifier under Node (which has fetch and WebCrypto), for developers:
//   node web/verify/cli.mjs RECEIPT.json [--rpc URL] [--driver ADDRESS] [--contract ADDRESS]
// prints the checks and the verdict as JSON lines. The page itself needs no Node.
import { readFileSync } from "node:fs";

import { parse } from "./src/pyjson.js";
import { verifyReceipt } from "./src/verifier.js";

const [file, ...rest] = process.argv.slice(2);
const options = {};
for (let i = 0; i < rest.length; i += 2) options[rest[i].replace(/^--/, "")] = rest[i + 1];
const verdict = await verifyReceipt(parse(readFileSync(file, "utf-8")), {
  rpcUrl: options.rpc ?? null, driver: options.driver ?? null, contract: options.contract ?? null,
});
for (const c of verdict.checks) console.log(JSON.stringify(c));
console.log(JSON.stringify({ status: verdict.status, proves: verdict.proves }));
