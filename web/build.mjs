// Builds the terminal: TypeScript from the protos (buf + protoc-gen-es, from node_modules), the
// page bundle and the gateway (esbuild). Offline: nothing is fetched. Prints the bundle sizes.
//   node build.mjs            build into dist/
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = path.dirname(new URL(import.meta.url).pathname);
process.chdir(here);

// Regenerate the proto code when a proto is newer than the last generation.
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}
const stamp = "gen/.stamp";
const protoTime = Math.max(newest("../protos/safeharbor"), statSync("buf.gen.yaml").mtimeMs);
if (!existsSync(stamp) || statSync(stamp).mtimeMs < protoTime) {
  execFileSync(path.join("node_modules", ".bin", "buf"), ["generate", "--template", "buf.gen.yaml"], {
    stdio: "inherit",
  });
  writeFileSync(stamp, new Date().toISOString() + "\n");
}

mkdirSync("dist/public", { recursive: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: ["src/page/main.ts"],
  outfile: "dist/public/app.js",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox110", "safari16"],
  legalComments: "none",
  logLevel: "warning",
});
for (const f of ["index.html", "app.css"]) copyFileSync(path.join("src/page", f), path.join("dist/public", f));

await esbuild.build({
  absWorkingDir: here,
  entryPoints: ["src/gateway/main.ts"],
  outfile: "dist/gateway.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  logLevel: "warning",
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});

const js = readFileSync("dist/public/app.js");
const css = readFileSync("dist/public/app.css");
console.log(
  `web: page app.js ${(js.length / 1024).toFixed(1)} KiB (${(gzipSync(js).length / 1024).toFixed(1)} KiB gzip), ` +
    `app.css ${(css.length / 1024).toFixed(1)} KiB; gateway dist/gateway.mjs ` +
    `${(statSync("dist/gateway.mjs").size / 1024).toFixed(0)} KiB`,
);
