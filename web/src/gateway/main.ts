// The browser terminal's gateway: serves the built pages and speaks Connect / gRPC-Web to the
// browser, gRPC over mTLS to the services. It holds the certificate of ONE organization (as a
// terminal in that office would) and every call it makes carries that identity and nothing else:
// no header, identity or field from the browser decides who is calling. It stores nothing; it
// logs one JSON line per event, never a message body.
import { X509Certificate, createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import * as http from "node:http";
import * as path from "node:path";

import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type ConnectRouter,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";

import { BedsService } from "../../gen/safeharbor/beds/v1/beds_pb.js";
import { DirectoryService } from "../../gen/safeharbor/directory/v1/directory_pb.js";
import { ReferralService } from "../../gen/safeharbor/referrals/v1/referrals_pb.js";
import {
  type Identity,
  methodsFor,
  type Role,
  ROLES,
  type TerminalInfo,
} from "../shared/terminal.js";

// ---------------------------------------------------------------- configuration
interface Config {
  listenHost: string;
  port: number;
  certsDir: string;
  cert: string;
  key: string;
  ca: string;
  directory: string;
  beds: string;
  referrals: string;
  staticDir: string;
  requestMaxBytes: number;
  callTimeoutMs: number;
  maxStreams: number;
  allowedHosts: string[];
}

const HELP = `safeharbor-gateway: the browser terminal for one organization.
Flags (each also as an environment variable SAFEHARBOR_WEB_<FLAG>, flags win):
  --listen_host=127.0.0.1      bind address (loopback: the terminal is this machine's browser)
  --port=8471                  HTTP port of the pages and the Connect / gRPC-Web API
  --certs_dir=.run/certs       where --cert, --key and --ca are looked up when relative
  --cert=client-law_enforcement.crt  the organization's client certificate (its SPIFFE identity)
  --key=<cert without .crt>.key
  --ca=ca.crt                  the network CA that signed the services' certificates
  --directory=localhost:50051  --beds=localhost:50052  --referrals=localhost:50053
  --static_dir=<dist/public beside this file>
  --request_max_bytes=65536    largest request message accepted from the browser
  --call_timeout_ms=10000      deadline of every unary call to a service
  --max_streams=32             open live-update streams at once
  --allowed_hosts=             more host[:port] names the pages may be reached by (comma-separated;
                               the listen address, localhost and 127.0.0.1 always are)`;

function parseConfig(argv: string[]): Config {
  const flags = new Map<string, string>();
  for (const a of argv) {
    if (a === "--help" || a === "-h") {
      console.log(HELP);
      process.exit(0);
    }
    const m = /^--([a-z_]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`unknown argument '${a}' (see --help)`);
    flags.set(m[1], m[2]);
  }
  const get = (name: string, def: string): string =>
    flags.get(name) ?? process.env[`SAFEHARBOR_WEB_${name.toUpperCase()}`] ?? def;
  const int = (name: string, def: number, min: number, max: number): number => {
    const v = Number(get(name, String(def)));
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new Error(`--${name} must be an integer from ${min} to ${max}`);
    }
    return v;
  };
  const certsDir = get("certs_dir", ".run/certs");
  const inCerts = (p: string) => (path.isAbsolute(p) ? p : path.join(certsDir, p));
  const cert = inCerts(get("cert", "client-law_enforcement.crt"));
  const here = path.dirname(new URL(import.meta.url).pathname);
  return {
    listenHost: get("listen_host", "127.0.0.1"),
    port: int("port", 8471, 1, 65535),
    certsDir,
    cert,
    key: inCerts(get("key", cert.replace(/\.crt$/, "") + ".key")),
    ca: inCerts(get("ca", "ca.crt")),
    directory: get("directory", "localhost:50051"),
    beds: get("beds", "localhost:50052"),
    referrals: get("referrals", "localhost:50053"),
    staticDir: get("static_dir", path.join(here, "public")),
    requestMaxBytes: int("request_max_bytes", 65536, 1024, 4 * 1024 * 1024),
    callTimeoutMs: int("call_timeout_ms", 10000, 100, 120000),
    maxStreams: int("max_streams", 32, 1, 1000),
    allowedHosts: get("allowed_hosts", "").split(",").map((x) => x.trim().toLowerCase()).filter(Boolean),
  };
}

// ---------------------------------------------------------------- log
function log(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + "\n");
}

// ---------------------------------------------------------------- identity

function identityOf(pem: Buffer): Identity {
  const x = new X509Certificate(pem.toString("utf8"));
  const uris = (x.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
  const spiffe = uris.find((u) => u.startsWith("spiffe://safeharbor/"));
  const m = spiffe && /^spiffe:\/\/safeharbor\/org\/([a-z0-9][a-z0-9-]*)\/role\/([a-z_]+)$/.exec(spiffe);
  if (!m) throw new Error("the certificate carries no spiffe://safeharbor/org/<org>/role/<role> URI");
  const role = m[2] as Role;
  if (!ROLES.includes(role)) {
    throw new Error(`role '${m[2]}' has no terminal screen (serves: ${ROLES.join(", ")})`);
  }
  if (Date.parse(x.validTo) < Date.now()) throw new Error(`the certificate expired on ${x.validTo}`);
  return {
    organizationId: m[1],
    role,
    spiffeId: spiffe!,
    subject: x.subject.replace(/\n/g, ", "),
    notAfter: new Date(x.validTo).toISOString(),
    fingerprint256: x.fingerprint256,
  };
}

// ---------------------------------------------------------------- the pass-through API
const SERVICES: { desc: DescService; label: string; target: keyof Config }[] = [
  { desc: DirectoryService, label: "directory", target: "directory" },
  { desc: BedsService, label: "beds", target: "beds" },
  { desc: ReferralService, label: "referral", target: "referrals" },
];

// A service that cannot be reached is named, so the page can say which one and why.
function upstreamError(label: string, e: unknown): ConnectError {
  const err = ConnectError.from(e);
  if (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded) {
    return new ConnectError(
      `the ${label} service is unreachable right now (${err.rawMessage || Code[err.code]})`,
      err.code,
    );
  }
  if (err.code === Code.Canceled) return new ConnectError("cancelled", Code.Canceled);
  // Only the code and the service's message go back: no upstream headers or trailers.
  return new ConnectError(err.rawMessage, err.code);
}

function routes(cfg: Config, id: Identity, transports: Map<string, Transport>) {
  let openStreams = 0;
  const allowed = new Set(methodsFor(id.role));
  return (router: ConnectRouter) => {
    for (const { desc, label, target } of SERVICES) {
      const client = createClient(desc, transports.get(target as string)!) as unknown as Record<
        string,
        (req: unknown, opts: object) => unknown
      >;
      const impl: Record<string, unknown> = {};
      for (const m of desc.methods as DescMethod[]) {
        const full = `${desc.typeName}/${m.name}`;
        if (!allowed.has(full)) continue; // Not served: UNIMPLEMENTED, the page never needs it.
        if (m.methodKind === "unary") {
          impl[m.localName] = async (req: unknown, ctx: HandlerContext) => {
            const started = Date.now();
            try {
              const res = await (client[m.localName](req, {
                signal: ctx.signal,
                timeoutMs: Math.min(cfg.callTimeoutMs, ctx.timeoutMs() ?? cfg.callTimeoutMs),
              }) as Promise<unknown>);
              log("call", { method: full, code: "OK", ms: Date.now() - started });
              return res;
            } catch (e) {
              const err = upstreamError(label, e);
              log("call", { method: full, code: Code[err.code], ms: Date.now() - started, error: err.rawMessage });
              throw err;
            }
          };
        } else if (m.methodKind === "server_streaming") {
          impl[m.localName] = async function* (req: unknown, ctx: HandlerContext) {
            if (openStreams >= cfg.maxStreams) {
              throw new ConnectError("too many live-update streams on this terminal; retry shortly", Code.ResourceExhausted);
            }
            openStreams++;
            const started = Date.now();
            let sent = 0;
            log("stream_open", { method: full, open: openStreams });
            try {
              for await (const r of client[m.localName](req, { signal: ctx.signal, timeoutMs: 0 }) as AsyncIterable<unknown>) {
                sent++;
                yield r as never;
              }
              log("stream_end", { method: full, code: "OK", sent, ms: Date.now() - started });
            } catch (e) {
              const err = upstreamError(label, e);
              log("stream_end", { method: full, code: Code[err.code], sent, ms: Date.now() - started, error: err.rawMessage });
              throw err;
            } finally {
              openStreams--;
            }
          };
        }
      }
      router.service(desc, impl as never);
    }
  };
}

// ---------------------------------------------------------------- static pages
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".map": "application/json",
};
// The pages: one document, the screen follows the terminal's role.
const PAGES = new Set(["/", "/intake", "/inbox"]);

function securityHeaders(res: http.ServerResponse): void {
  res.setHeader(
    "Content-Security-Policy",
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
      "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  );
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Referrer-Policy", "no-referrer");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
}

function sendStatic(cfg: Config, urlPath: string, res: http.ServerResponse): boolean {
  const rel = PAGES.has(urlPath) ? "index.html" : urlPath.replace(/^\/+/, "");
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(rel)) return false; // flat directory, no traversal
  const file = path.join(cfg.staticDir, rel);
  try {
    if (!statSync(file).isFile()) return false;
  } catch {
    return false;
  }
  res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
  res.end(readFileSync(file));
  return true;
}

// ---------------------------------------------------------------- server
function main(): void {
  let cfg: Config;
  let id: Identity;
  let creds: { cert: Buffer; key: Buffer; ca: Buffer };
  try {
    cfg = parseConfig(process.argv.slice(2));
    creds = { cert: readFileSync(cfg.cert), key: readFileSync(cfg.key), ca: readFileSync(cfg.ca) };
    id = identityOf(creds.cert);
    statSync(path.join(cfg.staticDir, "index.html"));
  } catch (e) {
    console.error(`safeharbor-gateway: ${(e as Error).message}`);
    process.exit(2);
  }
  const transports = new Map<string, Transport>();
  for (const { target } of SERVICES) {
    const address = cfg[target] as string;
    transports.set(
      target as string,
      createGrpcTransport({
        baseUrl: `https://${address}`,
        nodeOptions: { ...creds }, // mTLS: the organization's certificate, checked against the CA
        readMaxBytes: 4 * 1024 * 1024,
        pingIntervalMs: 30000,
        idleConnectionTimeoutMs: 60000,
      }),
    );
  }
  const terminal = JSON.stringify({
    ...id,
    services: { directory: cfg.directory, beds: cfg.beds, referrals: cfg.referrals },
  });

  const api = connectNodeAdapter({
    routes: routes(cfg, id, transports),
    grpc: false, // browsers speak Connect or gRPC-Web
    // Fields this build does not know are dropped, not passed on: only the proto's fields go on.
    binaryOptions: { readUnknownFields: false },
    jsonOptions: { ignoreUnknownFields: false },
    readMaxBytes: cfg.requestMaxBytes,
    requireConnectProtocolHeader: false,
    maxTimeoutMs: 120000,
    fallback: (req, nodeRes) => {
      const res = nodeRes as unknown as http.ServerResponse;
      securityHeaders(res);
      const url = new URL(req.url ?? "/", "http://x");
      if (req.method === "GET" && url.pathname === "/terminal.json") {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(terminal);
        return;
      }
      if ((req.method === "GET" || req.method === "HEAD") && sendStatic(cfg, url.pathname, res)) return;
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
      res.end("not found\n");
    },
  });

  const expectedHosts = new Set([
    `${cfg.listenHost}:${cfg.port}`,
    `localhost:${cfg.port}`,
    `127.0.0.1:${cfg.port}`,
    ...cfg.allowedHosts,
  ]);
  const server = http.createServer((req, res) => {
    // Only this terminal's own pages may use its identity: another site open in the same browser
    // (or a DNS-rebinding name) must not reach the API.
    const host = (req.headers.host ?? "").toLowerCase();
    const origin = req.headers.origin;
    if (!expectedHosts.has(host) || (origin !== undefined && origin !== `http://${host}`)) {
      log("refused", { reason: "foreign host or origin", host, origin: origin ?? "" });
      res.writeHead(403, { "Content-Type": "text/plain; charset=utf-8" });
      res.end("this terminal answers only its own pages\n");
      return;
    }
    if (req.method === "POST" && Number(req.headers["content-length"] ?? 0) > cfg.requestMaxBytes + 1024) {
      res.writeHead(413, { "Content-Type": "text/plain; charset=utf-8" });
      res.end("request too large\n");
      req.resume();
      return;
    }
    securityHeaders(res);
    api(req, res);
  });
  server.requestTimeout = 0; // live-update streams stay open; unary calls have their own deadline
  server.headersTimeout = 10000;
  server.maxHeadersCount = 64;
  server.listen(cfg.port, cfg.listenHost, () => {
    log("listening", {
      address: `http://${cfg.listenHost}:${cfg.port}/`,
      organization: id.organizationId,
      role: id.role,
      spiffe_id: id.spiffeId,
      certificate_sha256: createHash("sha256").update(creds.cert.toString("utf8")).digest("hex").slice(0, 16),
      services: { directory: cfg.directory, beds: cfg.beds, referrals: cfg.referrals },
    });
  });
  const stop = (sig: string) => {
    log("stopping", { signal: sig });
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main();
