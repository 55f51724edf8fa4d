// Copies the operator console's third-party assets (pinned in web/package-lock.json) from
// web/node_modules into the Python package, which serves them itself: no CDN.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "..", "node_modules");
const out = join(here, "..", "..", "csms", "admin", "console", "static", "vendor");
const assets = {
  "htmx.min.js": "htmx.org/dist/htmx.min.js",
  "sse.js": "htmx-ext-sse/dist/sse.min.js",
  "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
  "uPlot.min.css": "uplot/dist/uPlot.min.css",
};
mkdirSync(out, { recursive: true });
for (const [name, source] of Object.entries(assets)) {
  copyFileSync(join(modules, source), join(out, name));
}
const versions = ["htmx.org", "htmx-ext-sse", "uplot"].map(
  (p) => `${p} ${JSON.parse(readFileSync(join(modules, p, "package.json"), "utf-8")).version}`);
console.log(`csms/admin/console/static/vendor: ${versions.join(", ")}`);
