// The launcher's reaper: nothing a launcher started outlives it, however the launcher ends (even kill -KILL).
// The launcher starts it first, in a session of its own (a Ctrl-C or a closed terminal does not reach it), and
// writes a line "<pid> <starttime>" to its stdin for every process it starts (starttime: /proc/<pid>/stat field
// 22, so a reused pid is never taken for it). When that pipe closes (the launcher exited, cleanly or not), the
// reaper sends SIGTERM to each of those processes still running, SIGKILL to any left after GRACE_MS, and exits.
// Plain JavaScript with no imports beyond Node's: it must start fast and depend on nothing that can break.
import { readFileSync } from 'node:fs';

const GRACE_MS = 2000;
const POLL_MS = 50;
/** @type {Map<number, number>} */
const tracked = new Map();

function startTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return null;
  }
}
const alive = (pid, ticks) => startTicks(pid) === ticks;
function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGPIPE']) process.on(sig, () => {});

let buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  const lines = buffered.split('\n');
  buffered = lines.pop() ?? '';
  for (const line of lines) {
    const m = /^(\d{1,10}) (\d{1,20})$/.exec(line.trim());
    if (m) tracked.set(Number(m[1]), Number(m[2]));
  }
});
let reaping = false;
function reap() {
  if (reaping) return;
  reaping = true;
  const left = () => [...tracked].filter(([pid, ticks]) => alive(pid, ticks));
  for (const [pid] of left()) signal(pid, 'SIGTERM');
  const until = Date.now() + GRACE_MS;
  const poll = () => {
    const rest = left();
    if (rest.length === 0) process.exit(0);
    if (Date.now() >= until) {
      for (const [pid] of rest) signal(pid, 'SIGKILL');
      process.exit(0);
    }
    setTimeout(poll, POLL_MS);
  };
  poll();
}
process.stdin.on('end', reap);
process.stdin.on('close', reap);
process.stdin.on('error', reap);
