// Start-up time of a real run: `lockstep train --topology demo --steps 5` (or the arguments given), timed from
// the spawn to its "all N pods ready" line, to its first progress line (step 1 unless the progress line was
// throttled), and to its exit.
// Usage: node scripts/first-step.mjs [train args...]; LOCKSTEP_ENTRY=src times the sources through tsx.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../orchestrator/bin/lockstep.js', import.meta.url));
const args = process.argv.length > 2 ? process.argv.slice(2) : ['--topology', 'demo', '--steps', '5'];
const began = performance.now();
const seconds = () => ((performance.now() - began) / 1000).toFixed(2);
const child = spawn(process.execPath, [cli, 'train', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
const marks = {};
let rest = '';
child.stderr.on('data', (chunk) => {
  const lines = (rest + chunk).split('\n');
  rest = lines.pop();
  for (const line of lines) {
    if (!marks.ready && / pods? ready/.test(line)) marks.ready = seconds();
    const step = / (\d+)\/\d+ loss /.exec(line);
    if (!marks.firstStep && step) marks.firstStep = `${seconds()} s (step ${step[1]})`;
    if (line.startsWith('lockstep:') && !line.includes(' x ')) process.stderr.write(`${line}\n`);
  }
});
child.on('exit', (code) => {
  console.log(`pods ready ${marks.ready ?? '-'} s, first progress line ${marks.firstStep ?? '-'}, exit ${code} at ${seconds()} s`);
  process.exit(code ?? 1);
});
