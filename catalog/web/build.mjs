// Copy the npm packages the page uses into static/vendor (served by `spectralearth serve`;
// no CDN at run time). Run from this folder: `npm ci && npm run vendor`.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

const out = "static/vendor";
mkdirSync(join(out, "images"), { recursive: true });
const dist = "node_modules/leaflet/dist";
for (const f of ["leaflet.js", "leaflet.css"]) copyFileSync(join(dist, f), join(out, f));
for (const f of readdirSync(join(dist, "images"))) copyFileSync(join(dist, "images", f), join(out, "images", f));
copyFileSync("node_modules/leaflet/LICENSE", join(out, "LEAFLET-LICENSE"));
console.log(`vendored leaflet into ${out}`);
