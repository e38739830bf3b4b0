import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { EventActor } from '@lockstep/topology';
import { UsageError } from '../errors.ts';
import type { InjectedFault } from '../faults.ts';
import type { LiveRun } from './live.ts';
import type { RunMetrics } from './metrics.ts';

/** How often the page's `status` event is sent, ms. */
const STATUS_EVERY_MS = 500;
/** The largest request body read (a kill request is a few dozen bytes). */
const MAX_BODY = 1024;

/** A kill request: `{"target": "host/0/1"}`. */
export const KillRequest = z.object({ target: EventActor }).strict();

/** The page's files by name: index.html, app.js, style.css, uplot.js, uplot.css. */
type PageFiles = Record<'index.html' | 'app.js' | 'style.css' | 'uplot.js' | 'uplot.css', string>;

/**
 * The page's files: from the bundle, the module orchestrator/build.mjs writes beside it (dist/ui-page.js, which the
 * image carries); from the sources, src/ui/page and uPlot from node_modules.
 */
async function pageFiles(): Promise<PageFiles> {
  const bundled = fileURLToPath(new URL('./ui-page.js', import.meta.url));
  if (existsSync(bundled)) return ((await import(pathToFileURL(bundled).href)) as { default: PageFiles }).default;
  const dir = fileURLToPath(new URL('./page/', import.meta.url));
  const require = createRequire(import.meta.url);
  const read = (f: string) => readFileSync(f, 'utf8');
  return {
    'index.html': read(`${dir}index.html`),
    'app.js': read(`${dir}app.js`),
    'style.css': read(`${dir}style.css`),
    'uplot.js': read(require.resolve('uplot/dist/uPlot.iife.min.js')),
    'uplot.css': read(require.resolve('uplot/dist/uPlot.min.css')),
  };
}

async function assets(): Promise<Record<string, { type: string; body: string }>> {
  const f = await pageFiles();
  const js = 'text/javascript; charset=utf-8';
  const css = 'text/css; charset=utf-8';
  return {
    '/': { type: 'text/html; charset=utf-8', body: f['index.html'] },
    '/app.js': { type: js, body: f['app.js'] },
    '/style.css': { type: css, body: f['style.css'] },
    '/uplot.js': { type: js, body: f['uplot.js'] },
    '/uplot.css': { type: css, body: f['uplot.css'] },
  };
}

/**
 * The status page's HTTP server (Node's http module): the page (`/`, its
 * script and styles, uPlot vendored from npm, nothing from a CDN), `/status`
 * (JSON, `LiveStatus`), `/events` (server-sent events: `status` every 500 ms,
 * and `step`, `retry`, `restart`, `exit`, `heal`, `fault`, `run` as they
 * happen), `/metrics` (Prometheus text) and `POST /kill` (JSON
 * `{"target":"host/p/h"}`: the host's process is killed through the
 * launcher's supervisor, as a scenario's `kill`). A kill must come as
 * `application/json`, which a page of another origin cannot send without the
 * browser asking first (no CORS headers are given), so only this page can.
 */
export class StatusServer {
  private server: Server | undefined;
  private readonly clients = new Set<ServerResponse>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private unsubscribe: (() => void) | undefined;
  private files: Record<string, { type: string; body: string }> = {};

  constructor(
    private readonly o: {
      live: LiveRun;
      metrics: RunMetrics;
      /** Kill the process that runs `target`; undefined when it is not running now. Throws UsageError for a target no process runs. */
      kill: (target: string) => InjectedFault | undefined | Promise<InjectedFault | undefined>;
      /** The hosts a kill may name. */
      targets: readonly string[];
    },
  ) {}

  /** Listen on host:port (0: a free port); resolves with the page's address. UsageError when the port cannot be had. */
  async listen(host: string, port: number): Promise<string> {
    this.files = await assets();
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new UsageError(`--ui ${host}:${port}: cannot listen there (${err.code ?? err.message}); pick another port (0: a free one)`)),
      );
      server.listen(port, host, () => resolve());
    });
    this.unsubscribe = this.o.live.subscribe((kind, data) => this.send(kind, data));
    this.timer = setInterval(() => this.send('status', this.o.live.status(Date.now())), STATUS_EVERY_MS);
    const a = server.address() as AddressInfo;
    return `http://${host}:${a.port}/`;
  }

  private send(kind: string, data: unknown): void {
    const text = `event: ${kind}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of this.clients) res.write(text);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://page');
    const reply = (code: number, type: string, body: string | Buffer) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const json = (code: number, value: unknown) => reply(code, 'application/json', `${JSON.stringify(value)}\n`);
    try {
      if (req.method === 'POST' && url.pathname === '/kill') return await this.kill(req, json);
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'only GET, and POST /kill' });
      const asset = this.files[url.pathname];
      if (asset) return reply(200, asset.type, asset.body);
      if (url.pathname === '/status') return json(200, this.o.live.status(Date.now()));
      if (url.pathname === '/metrics') {
        const m = await this.o.metrics.text();
        return reply(200, m.contentType, m.body);
      }
      if (url.pathname === '/events') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write(`retry: 1000\nevent: status\ndata: ${JSON.stringify(this.o.live.status(Date.now()))}\n\n`);
        this.clients.add(res);
        req.on('close', () => this.clients.delete(res));
        return;
      }
      return json(404, { error: `no ${url.pathname}: the page is /, its data /status, /events and /metrics` });
    } catch (err) {
      return json(500, { error: (err as Error).message });
    }
  }

  private async kill(req: IncomingMessage, json: (code: number, value: unknown) => void): Promise<void> {
    if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
      return json(415, { error: 'a kill request must be application/json: {"target":"host/<p>/<h>"}' });
    let body = '';
    for await (const chunk of req) {
      body += chunk;
      if (body.length > MAX_BODY) return json(413, { error: `a kill request is at most ${MAX_BODY} bytes` });
    }
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      return json(400, { error: 'body: not JSON' });
    }
    const r = KillRequest.safeParse(value);
    if (!r.success) return json(400, { error: `target: ${r.error.issues[0]?.message ?? 'invalid'}` });
    if (!this.o.targets.includes(r.data.target))
      return json(400, { error: `target: ${r.data.target} is not a host of this run (${this.o.targets.join(', ')})` });
    if (!this.o.live.status(Date.now()).canKill) return json(409, { error: 'the run is not running' });
    const done = await this.o.kill(r.data.target);
    if (!done) return json(409, { error: `${r.data.target}: its process is not running now (restarting?)` });
    return json(202, done);
  }

  /** Send the last status, end every event stream and stop listening. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
    this.send('status', this.o.live.status(Date.now()));
    this.send('end', {});
    for (const res of this.clients) res.end();
    this.clients.clear();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
