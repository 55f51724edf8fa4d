// Builds the driver's receipt page: the verifier bundled (esbuild) into one self-contained
// HTML file, web/verify/dist/verify.html, that works from a file on disk or any static host.
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const result = await build({
  entryPoints: [join(here, "src", "page.js")],
  bundle: true,
  format: "iife",
  target: ["es2022"],
  minify: true,
  legalComments: "eof",
  write: false,
  supported: { "inline-script": false },
});
const js = result.outputFiles[0].text;
if (js.toLowerCase().includes("</script")) throw new Error("the bundle would close its script tag");
const template = readFileSync(join(here, "index.html"), "utf-8");
if (!template.includes("<script>/*BUNDLE*/</script>")) throw new Error("no bundle slot in index.html");
const page = template.replace("<script>/*BUNDLE*/</script>", () => `<script>${js}</script>`);
mkdirSync(join(here, "dist"), { recursive: true });
writeFileSync(join(here, "dist", "verify.html"), page);
console.log(`web/verify/dist/verify.html: ${page.length} bytes`);
