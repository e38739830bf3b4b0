import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePorts } from '../src/ports.ts';

describe('ports for a local cluster', () => {
  it('are distinct, and each can be listened on once handed out', async () => {
    const ports = await freePorts(40);
    expect(new Set(ports).size).toBe(40);
    for (const port of ports.slice(0, 5)) {
      await new Promise<void>((resolve, reject) => {
        const srv = createServer();
        srv.once('error', reject);
        srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
      });
    }
  });
});
