import { describe, expect, it } from 'vitest';
import { natsConfig, runLogServerConfig } from '../src/index.ts';

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

  it('with a route login, the route port requires it and every route URL carries it', () => {
    const route = { user: 'route', password: 'pw-_0123456789abcdefXYZ' };
    const c = natsConfig({ pod: 0, port: 4222, clusterPort: 6222, routes: [{ port: 6223 }, { host: 'nats-2', port: 6224 }], route });
    const cluster = c.slice(c.indexOf('cluster {'));
    expect(cluster).toContain('authorization { user: "route", password: "pw-_0123456789abcdefXYZ", timeout: 5 }');
    expect(cluster).toContain(
      'routes: [nats-route://route:pw-_0123456789abcdefXYZ@127.0.0.1:6223, nats-route://route:pw-_0123456789abcdefXYZ@nats-2:6224]',
    );
    // a server that only accepts routes (through a DCN proxy, the higher pod dials none) still requires the login
    const accepting = natsConfig({ pod: 1, port: 4223, clusterPort: 6223, routes: [], noAdvertise: true, route });
    expect(accepting).toContain('authorization { user: "route"');
  });

  it('no server opens a port beyond its client and route ports (no http monitoring, leaf node, gateway, websocket or MQTT)', () => {
    const route = { user: 'route', password: 'pw-_0123456789abcdefXYZ' };
    const pod = natsConfig({ pod: 0, port: 4222, clusterPort: 6222, routes: [{ port: 6223 }], route });
    const runLog = runLogServerConfig({ port: 4300, storeDir: '/tmp/js' });
    for (const c of [pod, runLog])
      for (const key of ['http', 'https', 'monitor_port', 'http_port', 'https_port', 'leafnodes', 'gateway', 'websocket', 'mqtt'])
        expect(c, key).not.toMatch(new RegExp(`^\\s*${key}\\s*[:={ ]`, 'm'));
  });

  it("a monitoring port, when given, is the one HTTP port, on the client port's interface", () => {
    const pod = natsConfig({ pod: 0, port: 4222, clusterPort: 6222, routes: [], monitorPort: 8222 });
    const runLog = runLogServerConfig({ port: 4300, storeDir: '/tmp/js', monitorPort: 8300 });
    const inContainer = natsConfig({ pod: 0, host: '0.0.0.0', port: 4222, clusterPort: 6222, routes: [], monitorPort: 8222 });
    expect(pod.match(/^\s*https?\s*:.*$/gm)).toEqual(['http: 127.0.0.1:8222']);
    expect(runLog.match(/^\s*https?\s*:.*$/gm)).toEqual(['http: 127.0.0.1:8300']);
    expect(inContainer.match(/^\s*https?\s*:.*$/gm)).toEqual(['http: 0.0.0.0:8222']);
    for (const c of [pod, runLog]) expect(c).not.toMatch(/^\s*(https|monitor_port|http_port|https_port)\s*[:={ ]/m);
  });
});
