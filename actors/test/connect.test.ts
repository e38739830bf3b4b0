import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { connectNats } from '../src/index.ts';
import { quietLog, startNatsServer } from './helpers.ts';

/** Wait until `ok()` holds, checking every 50 ms; throws after `ms`. */
async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const open: NatsConnection[] = [];
const servers: { stop: () => Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((nc) => nc.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

describe("a process's NATS connection", () => {
  it('goes to its own server (the first listed), never to a shuffled one', async () => {
    const home = await startNatsServer();
    const other = await startNatsServer();
    servers.push(home, other);
    // shuffled, 20 connections would all land on the first server once in a million
    for (let i = 0; i < 20; i++) open.push(await connectNats({ servers: [home.url, other.url], name: `p${i}`, log: quietLog }));
    expect(open.map((nc) => nc.getServer())).toEqual(open.map(() => `127.0.0.1:${home.port}`));
  });

  it('fails over while its own server is down and comes back once it returns', async () => {
    const home = await startNatsServer();
    const other = await startNatsServer();
    servers.push(other);
    const nc = await connectNats({ servers: [home.url, other.url], name: 'p', log: quietLog });
    open.push(nc);
    await home.stop();
    await until(() => nc.getServer() === `127.0.0.1:${other.port}`, 15_000, 'failed over to the other server');
    const back = await startNatsServer(['-p', String(home.port)]);
    servers.push(back);
    await until(() => nc.getServer() === `127.0.0.1:${home.port}`, 15_000, 'back on its own server');
    // and it works there
    const sub = nc.subscribe('t.home', { max: 1 });
    await nc.flush();
    nc.publish('t.home', 'hi');
    for await (const m of sub) expect(m.string()).toBe('hi');
  }, 60_000);
});
