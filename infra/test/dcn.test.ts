import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DcnProxy } from '../src/index.ts';

/** An echo server standing for the far pod's nats-server. */
let echo: Server;
let echoPort = 0;
const open = new Set<Socket>();

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Bytes that come back on `s` within `ms` (resolves early once `want` bytes arrived). */
function read(s: Socket, want: number, ms: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let n = 0;
    const done = () => {
      s.off('data', on);
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    };
    const on = (b: Buffer) => {
      parts.push(b);
      n += b.length;
      if (n >= want) done();
    };
    const timer = setTimeout(done, ms);
    s.on('data', on);
  });
}

describe('DCN fault proxy (real TCP sockets)', () => {
  beforeAll(async () => {
    echo = createServer((s) => {
      open.add(s);
      s.once('close', () => open.delete(s));
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    echoPort = (echo.address() as { port: number }).port;
  });
  afterAll(() => {
    for (const s of open) s.destroy();
    return new Promise<void>((r) => echo.close(() => r()));
  });

  it('forwards both ways, in order', async () => {
    const p = new DcnProxy({ host: '127.0.0.1', port: echoPort });
    const port = await p.start();
    const s = await dial(port);
    const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));
    s.write(data);
    expect((await read(s, data.length, 5000)).equals(data)).toBe(true);
    s.destroy();
    await p.stop();
  });

  it('cut drops live connections and refuses new ones until healed', async () => {
    const p = new DcnProxy({ host: '127.0.0.1', port: echoPort });
    const port = await p.start();
    const s = await dial(port);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    p.cut();
    await closed;
    const t = await dial(port);
    const refused = new Promise<void>((r) => t.once('close', () => r()));
    await refused;
    p.heal();
    const u = await dial(port);
    u.write('after');
    expect((await read(u, 5, 5000)).toString()).toBe('after');
    u.destroy();
    await p.stop();
  });

  it('a one-way cut holds one direction back (nothing is dropped) until healed', async () => {
    const p = new DcnProxy({ host: '127.0.0.1', port: echoPort });
    const port = await p.start();
    const s = await dial(port);
    p.cutOneWay('back'); // the echo's answers stop crossing
    s.write('ping');
    expect((await read(s, 4, 400)).length).toBe(0);
    expect(p.stats.bytes.forward).toBe(4); // the other way still flows
    p.heal();
    expect((await read(s, 4, 5000)).toString()).toBe('ping');
    s.destroy();
    await p.stop();
  });

  it('latency and bandwidth slow the link (lower bounds only: a slow machine only adds)', async () => {
    const p = new DcnProxy({ host: '127.0.0.1', port: echoPort });
    const port = await p.start();
    const s = await dial(port);
    p.latency(100);
    let t0 = performance.now();
    s.write('x');
    await read(s, 1, 5000);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190); // 100 ms each way
    p.latency(0);
    p.bandwidth(64 * 1024);
    const data = Buffer.alloc(64 * 1024, 7);
    t0 = performance.now();
    s.write(data);
    expect((await read(s, data.length, 10_000)).length).toBe(data.length);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(900); // 64 KiB at 64 KiB/s, each way
    s.destroy();
    await p.stop();
  });
});
