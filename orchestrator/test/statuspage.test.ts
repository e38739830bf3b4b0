import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preset } from '@lockstep/topology';
import { cliPath } from '../src/index.ts';
import { launch, newRunId } from '../src/launcher.ts';
import { runReference } from '../src/reference.ts';
import { LiveStatus } from '../src/ui/status.ts';
import { startStatusPage } from '../src/ui/statuspage.ts';
import { watchRun } from '../src/ui/watch.ts';
import { CHROMIUM, launchChromium } from './browser.ts';
import { quietLog, tempDir } from './helpers.ts';

/**
 * The status page of `lockstep train --ui`, in a real browser: Debian's chromium (scripts/ensure-browser.sh installs
 * it as root) driven by playwright-core. Without the browser these tests skip with one line, except where
 * LOCKSTEP_REQUIRE_BROWSER=1 (CI), where a missing browser fails them.
 */
const haveBrowser = existsSync(CHROMIUM);
const requireBrowser = process.env.LOCKSTEP_REQUIRE_BROWSER === '1';
if (!haveBrowser && !requireBrowser)
  process.stderr.write(`status page: browser tests skipped: no chromium at ${CHROMIUM} (as root: bash scripts/ensure-browser.sh)\n`);

const tiny = preset('tiny');
/** Wait for page state this long at most (a tiny run of 60 steps takes a few seconds here). */
const PAGE_MS = 90_000;

/** `lockstep train --ui 127.0.0.1:0 --json`: resolves the page's address from stderr, and the run's JSON result at exit. */
function trainWithPage(steps: number) {
  const runDir = tempDir('lockstep-ui-');
  const child = spawn(
    process.execPath,
    [cliPath, 'train', '--topology', 'tiny', '--steps', String(steps), '--ui', '127.0.0.1:0', '--json', '--run-dir', join(runDir, 'run')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  const url = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr += `${line}\n`;
      const m = /^status page at (http:\/\/127\.0\.0\.1:\d+\/)$/.exec(line);
      if (m) resolve(m[1]);
    });
    child.once('exit', () => reject(new Error(`train exited before printing the page's address:\n${stderr}`)));
  });
  let stdout = '';
  child.stdout!.on('data', (d) => (stdout += d));
  const done = new Promise<{ code: number | null; result: { paramsHash: string; steps: number; restarts: { process: string }[] } }>(
    (resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGINT');
        reject(new Error(`train did not finish within ${PAGE_MS} ms:\n${stderr}`));
      }, PAGE_MS);
      child.once('close', (code) => {
        clearTimeout(timer);
        try {
          resolve({ code, result: JSON.parse(stdout.trim().split('\n').at(-1) ?? '') });
        } catch {
          reject(new Error(`train printed no JSON (code ${code}):\n${stdout}\n${stderr}`));
        }
      });
    },
  );
  return { url, done, child };
}

describe.skipIf(!haveBrowser && !requireBrowser)('the status page in a browser', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A page that fails the test on any console error or uncaught exception. */
  async function openPage(url: string): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    return { page, errors };
  }

  it("shows every host's row, advances to the last step and ends with both pods' hash equal to lockstep reference; no console errors", async () => {
    const steps = 40;
    const run = trainWithPage(steps);
    const { page, errors } = await openPage(await run.url);
    for (const p of [0, 1]) for (const h of [0, 1]) await page.locator(`tr[data-host="host/${p}/${h}"]`).waitFor({ timeout: PAGE_MS });
    expect(await page.locator('#hosts tbody tr').count()).toBe(tiny.pods * tiny.hostsPerPod);
    await page.locator('#state', { hasText: 'finished' }).waitFor({ timeout: PAGE_MS });
    const { code, result } = await run.done;
    expect(code).toBe(0);
    const ref = runReference(tiny, steps).paramsHash;
    expect(result.paramsHash).toBe(ref);
    expect(await page.locator('#committed').textContent()).toBe(String(steps));
    expect(await page.locator('#pods tbody tr td.hash').allTextContents()).toEqual([ref, ref]);
    expect(await page.locator('#agree').textContent()).toBe('yes');
    // the chart drew the steps, the timeline a lane per host
    expect(await page.locator('#chart canvas').count()).toBeGreaterThan(0);
    expect(await page.locator('#timeline .lane').count()).toBe(tiny.pods * tiny.hostsPerPod);
    await page.close();
    expect(errors).toEqual([]);
  });

  it('a host killed with its button mid-run: the page shows it exit, restart and heal from its cross-pod peer, and the run still ends with the reference hash', async () => {
    const steps = 80;
    const run = trainWithPage(steps);
    const { page, errors } = await openPage(await run.url);
    // mid-run: some steps committed, the button enabled
    await page.waitForFunction("Number(document.getElementById('committed')?.textContent) >= 10", undefined, { timeout: PAGE_MS });
    const button = page.locator('button.kill[data-target="host/0/1"]');
    await expect.poll(() => button.isEnabled(), { timeout: PAGE_MS }).toBe(true);
    await button.click();
    const row = page.locator('tr[data-host="host/0/1"]');
    // its row counts the restart and the heal, from host 1 of the other pod
    await row.locator('td:nth-child(6)', { hasText: /^1$/ }).waitFor({ timeout: PAGE_MS });
    await row.locator('td:nth-child(7)', { hasText: /^1: from host\/1\/1/ }).waitFor({ timeout: PAGE_MS });
    const events = page.locator('#events');
    await events
      .locator('li', { hasText: /host\/0\/1: kill: host-0-1 \(pid \d+\)/ })
      .first()
      .waitFor({ timeout: PAGE_MS });
    await events.locator('li', { hasText: /host-0-1: exited \(SIGKILL\); restart 1 follows/ }).waitFor({ timeout: PAGE_MS });
    await events.locator('li', { hasText: /host-0-1: restarted \(restart 1, pid \d+\)/ }).waitFor({ timeout: PAGE_MS });
    await events.locator('li', { hasText: /host\/0\/1: healed from host\/1\/1: \d+ bytes/ }).waitFor({ timeout: PAGE_MS });
    await page.locator('#state', { hasText: 'finished' }).waitFor({ timeout: PAGE_MS });
    const { code, result } = await run.done;
    expect(code).toBe(0);
    const ref = runReference(tiny, steps).paramsHash;
    expect(result.paramsHash).toBe(ref);
    expect(result.restarts.map((r) => r.process)).toEqual(['host-0-1']);
    expect(await page.locator('#committed').textContent()).toBe(String(steps));
    expect(await page.locator('#pods tbody tr td.hash').allTextContents()).toEqual([ref, ref]);
    const shot = process.env.LOCKSTEP_SCREENSHOT;
    if (shot) {
      mkdirSync(dirname(shot), { recursive: true });
      await page.screenshot({ path: shot, fullPage: true });
    }
    await page.close();
    expect(errors).toEqual([]);
  });
});

describe('the status page without a browser', () => {
  it("/metrics parses as Prometheus text and its committed-steps counter equals the run's steps; /status matches its schema; a kill of a host no process runs is refused", async () => {
    const steps = 20;
    const runId = newRunId();
    const page = await startStatusPage({ host: '127.0.0.1', port: 0, topology: tiny, runId, steps, log: quietLog });
    let metrics = '';
    let status: unknown;
    const refused: { code: number; body: unknown }[] = [];
    try {
      const result = await launch({ ...page.hooks, topology: tiny, steps, runId, runsDir: tempDir(), log: quietLog });
      // the run is over, the page still serves until finish
      metrics = await (await fetch(`${page.url}metrics`)).text();
      status = await (await fetch(`${page.url}status`)).json();
      for (const [type, body] of [
        ['application/json', '{"target":"host/5/0"}'],
        ['application/json', '{"target":"host/0/0","x":1}'],
        ['text/plain', '{"target":"host/0/0"}'],
      ]) {
        const res = await fetch(`${page.url}kill`, { method: 'POST', headers: { 'content-type': type }, body });
        refused.push({ code: res.status, body: await res.json() });
      }
      expect(result.steps).toBe(steps);
    } finally {
      await page.finish({});
    }
    const families = parsePrometheusTextFormat(metrics);
    const family = (name: string) => families.find((f) => f.name === name);
    expect(family('lockstep_steps_committed_total')?.type).toBe('COUNTER');
    expect(Number(family('lockstep_steps_committed_total')?.metrics[0].value)).toBe(steps);
    expect(family('lockstep_phase_seconds')?.type).toBe('HISTOGRAM');
    // the parser folds a histogram's labelled series into one (it keeps labels only for `le`): read each phase's count
    for (const phase of ['forward', 'backward', 'reduceScatter', 'exchange', 'update', 'allGather'])
      expect(metrics, phase).toMatch(new RegExp(`^lockstep_phase_seconds_count\\{phase="${phase}"\\} ${steps}$`, 'm'));
    expect(Number(family('lockstep_step_seconds')?.metrics[0].count)).toBe(steps);
    expect(Number(family('lockstep_pods_agree')?.metrics[0].value)).toBe(1);
    const s = LiveStatus.parse(status);
    expect(s.committed).toBe(steps);
    expect(s.hosts.map((h) => h.id)).toEqual(['host/0/0', 'host/0/1', 'host/1/0', 'host/1/1']);
    expect(s.podHashes).toEqual([s.paramsHash, s.paramsHash]);
    expect(s.paramsHash).toBe(runReference(tiny, steps).paramsHash);
    expect(s.dcn?.inBytes).toBeGreaterThan(0);
    expect(refused.map((r) => r.code)).toEqual([400, 400, 415]);
  });

  it("lockstep watch's page, from the wire alone as the observer: it follows the committed steps to the run's hash, sees every host's heartbeat and the DCN link, and offers no kill", async () => {
    const steps = 20;
    let page: Awaited<ReturnType<typeof watchRun>> | undefined;
    let starting: Promise<void> | undefined;
    let status: unknown;
    try {
      const result = await launch({
        topology: tiny,
        steps,
        runsDir: tempDir(),
        log: quietLog,
        onCluster: ({ runId, urls, credentials, plan }) => {
          starting = watchRun({
            host: '127.0.0.1',
            port: 0,
            topology: tiny,
            runId,
            steps,
            urls,
            monitor: plan.servers.find((x) => x.name === 'nats-0')!.monitor,
            login: credentials?.observer,
            log: quietLog,
          }).then((p) => {
            page = p;
          });
        },
        onStep: async (l) => {
          if (l.step === steps - 1) status = await (await fetch(`${page!.url}status`)).json();
        },
      });
      await starting;
      // the last commit reaches the observer on the wire: wait for it (bounded)
      for (let i = 0; i < 50 && LiveStatus.safeParse(status).data?.committed !== steps; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = await (await fetch(`${page!.url}status`)).json().catch(() => status);
      }
      const s = LiveStatus.parse(status);
      expect(s.committed).toBe(steps);
      expect(s.state).toBe('finished');
      expect(s.paramsHash).toBe(result.paramsHash);
      expect(s.podHashes).toEqual([result.paramsHash, result.paramsHash]);
      expect(s.hosts.every((h) => h.heartbeatAgeMs !== null)).toBe(true);
      expect(s.dcn?.inBytes).toBeGreaterThan(0);
      expect(s.canKill).toBe(false);
    } finally {
      await starting;
      await page?.stop();
    }
  });
});
