import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preset, ReferenceTrainer } from '@lockstep/topology';
import { containerEngine } from '../src/testcontainers/index.ts';

/**
 * @lockstep/testcontainers as a user meets it: infra/build.mjs builds the package, `npm pack` packs it, and an empty
 * project in a temporary directory (outside the repository) installs the tarball with testcontainers 11 beside it,
 * offline (`npm ci --offline`, from a lockfile made of the repository's own, so every package comes from npm's cache),
 * then imports it from plain Node and type-checks against its declarations. With a container engine it also builds
 * the images from the package (its lockstep-images command, under test tags) and runs a cluster from plain Node with
 * a host killed and started again by its scenario name. Without an engine that part skips with one line, except
 * where LOCKSTEP_REQUIRE_DOCKER=1 (CI).
 */
const root = join(import.meta.dirname, '..', '..');
const requireDocker = process.env.LOCKSTEP_REQUIRE_DOCKER === '1';
const engine = await containerEngine();
if (!engine.ok && !requireDocker) process.stderr.write(`package: the container part skipped: no container engine (${engine.reason})\n`);

interface LockEntry {
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  [k: string]: unknown;
}

/**
 * A lockfile for a project depending on `roots`, made of the repository's lockfile entries: each root and, walking
 * the dependencies the way Node resolves them (the nearest node_modules up the path), everything it needs.
 */
function lockfileFor(roots: string[], extra: Record<string, LockEntry>): Record<string, LockEntry> {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const all = { ...lock.packages, ...extra };
  const out: Record<string, LockEntry> = {};
  const resolve = (from: string, name: string): string | undefined => {
    for (let at = from; ; ) {
      const key = `${at ? `${at}/` : ''}node_modules/${name}`;
      if (all[key]) return key;
      if (!at) return undefined;
      const i = at.lastIndexOf('/node_modules/');
      at = i < 0 ? '' : at.slice(0, i);
    }
  };
  const visit = (key: string) => {
    if (out[key]) return;
    const {
      dev: _d,
      devOptional: _o,
      peer: _p,
      ...entry
    } = all[key] as LockEntry & { dev?: boolean; devOptional?: boolean; peer?: boolean };
    out[key] = entry;
    for (const [name, optional] of [
      ...Object.keys(entry.dependencies ?? {}).map((n) => [n, false] as const),
      ...Object.keys(entry.optionalDependencies ?? {}).map((n) => [n, true] as const),
    ]) {
      const dep = resolve(key, name);
      if (dep) visit(dep);
      else if (!optional) throw new Error(`the repository's lockfile has no ${name} for ${key}`);
    }
  };
  for (const r of roots) {
    const key = resolve('', r);
    if (!key) throw new Error(`the repository's lockfile has no ${r}`);
    visit(key);
  }
  return out;
}

const run = (cmd: string, args: string[], cwd: string, timeout = 120_000) => {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, TESTCONTAINERS_RYUK_DISABLED: 'true' } });
  return { code: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
};

describe('@lockstep/testcontainers, packed and installed into an empty project', () => {
  let project: string;
  let tarball: string;
  let files: string[];
  beforeAll(() => {
    execFileSync(process.execPath, [join(root, 'infra', 'build.mjs'), '--if-stale'], { stdio: 'inherit', timeout: 300_000 });
    project = mkdtempSync(join(tmpdir(), 'lockstep-user-'));
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--pack-destination', project, join(root, 'infra', 'dist', 'package')], { encoding: 'utf8' }),
    ) as { filename: string; files: { path: string }[] }[];
    tarball = packed[0].filename;
    files = packed[0].files.map((f) => f.path);
    const pkg = JSON.parse(readFileSync(join(root, 'infra', 'dist', 'package', 'package.json'), 'utf8')) as LockEntry & {
      name: string;
      bin: Record<string, string>;
    };
    const installed = (n: string) =>
      (JSON.parse(readFileSync(join(root, 'node_modules', n, 'package.json'), 'utf8')) as { version: string }).version;
    const deps = { [pkg.name]: `file:${tarball}`, testcontainers: installed('testcontainers') };
    const devDeps = { '@types/node': installed('@types/node') };
    const self: LockEntry = {
      version: pkg.version,
      resolved: `file:${tarball}`,
      integrity: `sha512-${createHash('sha512')
        .update(readFileSync(join(project, tarball)))
        .digest('base64')}`,
      license: 'MIT',
      dependencies: pkg.dependencies,
      peerDependencies: pkg.peerDependencies,
      bin: pkg.bin,
    };
    const packages = lockfileFor([pkg.name, 'testcontainers', '@types/node'], { [`node_modules/${pkg.name}`]: self });
    const manifest = {
      name: 'lockstep-user',
      version: '1.0.0',
      private: true,
      type: 'module',
      dependencies: deps,
      devDependencies: devDeps,
    };
    writeFileSync(join(project, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    writeFileSync(
      join(project, 'package-lock.json'),
      `${JSON.stringify({ name: 'lockstep-user', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': manifest, ...packages } }, null, 2)}\n`,
    );
    const ci = run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], project, 180_000);
    expect(ci.code, `npm ci --offline in ${project}: ${ci.stderr}`).toBe(0);
  }, 400_000);
  afterAll(() => {
    if (project) rmSync(project, { recursive: true, force: true });
  }, 120_000);

  it('holds compiled JavaScript, one declaration file, the image context, a licence and no TypeScript source; testcontainers 11 is a peer', () => {
    expect(files).toEqual(
      expect.arrayContaining(['index.js', 'index.d.ts', 'LICENSE', 'README.md', 'package.json', 'bin/lockstep-images.js']),
    );
    expect(files).toEqual(
      expect.arrayContaining([
        'image/Dockerfile',
        'image/nats.Dockerfile',
        'image/healthcheck.js',
        'image/app/orchestrator/bin/lockstep.js',
      ]),
    );
    expect(files.some((f) => f.startsWith('image/app/modules/pino/'))).toBe(true);
    expect(files.filter((f) => /\.(ts|mts|cts)$/.test(f) && !f.endsWith('.d.ts') && !f.startsWith('image/app/modules/'))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(project, 'node_modules', '@lockstep', 'testcontainers', 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ license: 'MIT', peerDependencies: { testcontainers: '>=11.14.0 <12' } });
    expect(Object.keys(pkg.dependencies).filter((d) => d.startsWith('@lockstep/'))).toEqual([]);
    expect(readFileSync(join(project, 'node_modules', '@lockstep', 'testcontainers', 'LICENSE'), 'utf8')).toMatch(/^MIT License/);
  }, 60_000);

  it('plain Node imports it; bad options are refused before any container starts, naming the field', () => {
    const script = `
      import { LockstepCluster, InvalidInput, InvalidTopology, buildImages, startLockstepCluster } from '@lockstep/testcontainers';
      const refused = async (f) => { try { await f(); return 'accepted'; } catch (e) { return e.name + ': ' + e.message.replace(/\\n\\s*/g, ' | '); } };
      console.log(JSON.stringify({
        exports: [typeof LockstepCluster, typeof buildImages, typeof startLockstepCluster],
        steps: await refused(() => new LockstepCluster('tiny').withSteps(0).start()),
        runId: await refused(() => new LockstepCluster('tiny').withRunId('Not A Run').start()),
        topology: await refused(() => new LockstepCluster('huge').start()),
        image: await refused(() => buildImages({ image: 'UPPER:case' })),
      }));
    `;
    const r = run(process.execPath, ['--input-type=module', '-e', script], project);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      exports: ['function', 'function', 'function'],
      steps: 'InvalidInput: invalid lockstep cluster options: | steps: must be >= 1',
      runId: 'InvalidInput: invalid lockstep cluster options: | runId: must be 1-63 lowercase letters, digits or dashes',
      topology: expect.stringMatching(/^InvalidTopology: .*topology: huge is not a preset \(tiny, demo/),
      image: 'InvalidInput: invalid image options: | image: must be an image reference such as lockstep:dev',
    });
  }, 60_000);

  it('its lockstep-images command refuses a bad flag or tag with one line and exit 2, before touching an engine', () => {
    const bin = join('node_modules', '.bin', 'lockstep-images');
    const flag = run(process.execPath, [bin, '--nope'], project);
    expect(flag.code).toBe(2);
    expect(flag.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^lockstep-images: Unknown option '--nope'/)]);
    const tag = run(process.execPath, [bin, '--image', 'Not A Tag'], project);
    expect(tag.code).toBe(2);
    expect(tag.stderr.trim()).toBe('lockstep-images: invalid image options: image: must be an image reference such as lockstep:dev');
  }, 60_000);

  it('type-checks a user test against its declarations alone (tsc, node16 resolution, strict)', () => {
    writeFileSync(
      join(project, 'user.ts'),
      `import { LockstepCluster, type StartedLockstepCluster, type ClientSummary } from '@lockstep/testcontainers';
       export async function check(): Promise<string | null | undefined> {
         const c: StartedLockstepCluster = await new LockstepCluster('tiny').withSteps(10).withHeldClient().start();
         await c.startClient();
         await c.faults.kill('host/0/1');
         const nc = await c.connect(0, 'observer');
         nc.subscribe('lockstep.tc.>');
         const r: ClientSummary = await c.waitForClient();
         await c[Symbol.asyncDispose]();
         return r.summary?.paramsHash;
       }
       // @ts-expect-error steps is a number
       new LockstepCluster('tiny').withSteps('10');
      `,
    );
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = run(
      process.execPath,
      [
        tsc,
        '--noEmit',
        '--strict',
        '--module',
        'node16',
        '--moduleResolution',
        'node16',
        '--target',
        'es2022',
        '--types',
        'node',
        'user.ts',
      ],
      project,
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
  }, 180_000);

  describe.skipIf(!engine.ok && !requireDocker)('with a container engine', () => {
    // tags of this run's own (runs on one engine, by other people too, must not meet), removed after
    const tags = { image: `lockstep:pkgtest-${process.pid}`, natsImage: `lockstep-nats:pkgtest-${process.pid}` };
    const nodeImage = `lockstep-node:pkgtest-${process.pid}`;
    afterAll(() => {
      spawnSync('docker', ['rmi', '-f', tags.image, tags.natsImage, nodeImage], { stdio: 'ignore', timeout: 60_000 });
    }, 120_000);

    it('builds the images from the package (lockstep-images, no registry) and runs a tiny cluster from plain Node: a host killed by its scenario name heals, the run equals the reference, and disposing removes every container', () => {
      expect(engine.ok, `no container engine: ${engine.ok ? '' : engine.reason}`).toBe(true);
      const images = run(
        process.execPath,
        [join('node_modules', '.bin', 'lockstep-images'), '--image', tags.image, '--nats-image', tags.natsImage, '--node-image', nodeImage],
        project,
        300_000,
      );
      expect(images.code, images.stderr).toBe(0);
      expect(images.stdout).toContain(`lockstep-images: built ${tags.image}`);
      expect(images.stdout).toContain(`lockstep-images: built ${nodeImage}`);

      const steps = 20;
      writeFileSync(
        join(project, 'run.mjs'),
        `import { spawnSync } from 'node:child_process';
         import { LockstepCluster } from '@lockstep/testcontainers';
         const cluster = await new LockstepCluster('tiny').withSteps(${steps}).withRunId('pkg').withImages(${JSON.stringify(tags)}).withHeldClient().start();
         let r, killedAt, names, healed;
         try {
           await cluster.startClient();
           await cluster.untilStep(3);
           await cluster.faults.kill('host/0/1');
           killedAt = cluster.committed();
           await cluster.faults.start('host/0/1');
           r = await cluster.waitForClient();
           names = Object.values(cluster.containers).map((c) => c.getName().replace(/^\\//, ''));
           // pino writes to stderr; the second life of host/0/1 says whom it healed from
           const host = spawnSync('docker', ['logs', cluster.containers['host-0-1'].getId()], { encoding: 'utf8' });
           healed = /"from":"host\\/1\\/1".*"msg":"healed from cross-pod peer"/.test(host.stdout + host.stderr);
         } finally {
           await cluster[Symbol.asyncDispose]();
         }
         console.log(JSON.stringify({ exitCode: r.exitCode, summary: r.summary, steps: r.steps, names, killedAt, healed }));
        `,
      );
      const r = run(process.execPath, ['run.mjs'], project, 400_000);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as {
        exitCode: number;
        summary: { paramsHash: string; podsIdenticalEveryStep: boolean; retried: unknown[] };
        steps: { step: number; podsAgree: boolean }[];
        names: string[];
        killedAt: number;
        healed: boolean;
      };
      const reference = new ReferenceTrainer(preset('tiny'));
      for (let s = 0; s < steps; s++) reference.runStep();
      expect(out.killedAt).toBeLessThan(steps); // the fault landed mid-run
      expect(out.healed).toBe(true);
      expect(out.exitCode).toBe(0);
      expect(out.summary).toMatchObject({ paramsHash: reference.paramsHash(), podsIdenticalEveryStep: true });
      expect(out.steps.map((s) => s.step)).toEqual(Array.from({ length: steps }, (_, i) => i));
      expect(out.names.length).toBe(2 + 1 + 2 + 4 + 1); // two pods' servers, the run log's, two pod schedulers, four hosts, the client
      const left = run('docker', ['ps', '-a', '--format', '{{.Names}}'], project);
      expect(left.stdout.split('\n').filter((n) => out.names.includes(n))).toEqual([]);
    }, 900_000);
  });
});
