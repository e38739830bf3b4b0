import { describe, expect, it } from 'vitest';
import { natsConfig } from '../src/index.ts';

describe('nats config', () => {
  it('a single pod has no cluster block', () => {
    const c = natsConfig({ pod: 0, port: 4222, clusterPort: 6222, routes: [] });
    expect(c).toContain('listen: 127.0.0.1:4222');
    expect(c).not.toContain('cluster');
  });

  it('pods are joined by routes: the DCN link', () => {
    const c = natsConfig({ pod: 1, port: 4223, clusterPort: 6223, routes: [{ port: 6222 }, { host: 'nats-2', port: 6224 }] });
    expect(c).toContain('server_name: lockstep-pod-1');
    expect(c).toContain('routes: [nats-route://127.0.0.1:6222, nats-route://nats-2:6224]');
    expect(c).toContain('max_payload: 1048576');
  });
});
