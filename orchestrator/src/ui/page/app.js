// The lockstep status page: one EventSource on /events; a `status` event (every 500 ms) redraws everything,
// the other events (step, retry, restart, exit, heal, fault, run) are lines in the events list.
(() => {
  const PHASES = ['forward', 'backward', 'reduceScatter', 'exchange', 'update', 'allGather'];
  const COLORS = {
    forward: '#4e79a7',
    backward: '#f28e2b',
    reduceScatter: '#59a14f',
    exchange: '#e15759',
    update: '#b07aa1',
    allGather: '#76b7b2',
  };
  const $ = (id) => document.getElementById(id);
  const text = (el, s) => {
    if (el.textContent !== s) el.textContent = s;
  };
  const age = (ms) => (ms === null ? '-' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
  const bytes = (n) =>
    n === null ? '-' : n < 1024 ? `${n.toFixed(0)} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(2)} MiB`;
  let last = null;
  let chart = null;
  let seeded = false;

  const legend = $('legend');
  for (const p of PHASES) {
    const s = document.createElement('span');
    const i = document.createElement('i');
    i.style.background = COLORS[p];
    s.append(i, p);
    legend.append(s);
  }

  function row(tbody, key, cells) {
    let tr = tbody.querySelector(`tr[data-key="${key}"]`);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.key = key;
      for (let i = 0; i < cells; i++) tr.append(document.createElement('td'));
      tbody.append(tr);
    }
    return tr;
  }

  function processText(p) {
    return `${p.name}${p.pid ? ` (pid ${p.pid})` : ''}${p.state === 'running' ? '' : ` ${p.state}`}`;
  }

  function kill(target, button) {
    button.disabled = true;
    fetch('kill', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target }) })
      .then((r) => r.json())
      .then((r) =>
        addEvent({
          at: Date.now(),
          actor: target,
          kind: 'fault',
          text: r.error ? `kill refused: ${r.error}` : `kill sent to ${r.process} (pid ${r.pid})`,
        }),
      )
      .catch(() => addEvent({ at: Date.now(), actor: target, kind: 'fault', text: 'kill: no answer' }));
  }

  // a process that exited or is being restarted while the run goes on is marked; at the run's end every process exits
  function rowClass(s, state, phase) {
    if (s.state === 'finished' || s.state === 'failed') return 'ended';
    if (state !== 'running') return state;
    return phase === 'healing' ? 'healing' : '';
  }

  function drawPods(s) {
    const tbody = $('pods').tBodies[0];
    s.podStatus.forEach((p, i) => {
      const tr = row(tbody, p.id, 8);
      tr.dataset.pod = p.id;
      tr.className = rowClass(s, p.process.state, p.phase);
      const c = tr.cells;
      text(c[0], p.id);
      text(c[1], processText(p.process));
      text(c[2], p.phase ?? '-');
      text(c[3], p.step === null ? '-' : `${p.step} / ${p.attempt}`);
      text(c[4], age(p.heartbeatAgeMs));
      c[4].className = p.heartbeatAgeMs !== null && p.heartbeatAgeMs > 3000 && s.state === 'running' ? 'stale' : '';
      text(c[5], String(p.process.restarts));
      text(c[6], p.ready === null ? '-' : p.ready ? 'yes' : `no${p.silentHosts.length ? ` (silent: ${p.silentHosts.join(', ')})` : ''}`);
      c[7].className = 'hash';
      text(c[7], s.podHashes[i] ?? '-');
    });
  }

  function drawHosts(s) {
    const tbody = $('hosts').tBodies[0];
    for (const h of s.hosts) {
      const tr = row(tbody, h.id, 8);
      tr.dataset.host = h.id;
      tr.className = rowClass(s, h.process.state, h.phase);
      const c = tr.cells;
      text(c[0], h.id);
      text(c[1], processText(h.process));
      text(c[2], h.phase ?? '-');
      text(c[3], h.step === null ? '-' : `${h.step} / ${h.attempt}`);
      text(c[4], age(h.heartbeatAgeMs));
      c[4].className = h.heartbeatAgeMs !== null && h.heartbeatAgeMs > 3000 && s.state === 'running' ? 'stale' : '';
      text(c[5], String(h.process.restarts));
      text(
        c[6],
        h.lastHeal ? `${h.heals}: from ${h.lastHeal.from}, ${bytes(h.lastHeal.bytes)} in ${h.lastHeal.ms.toFixed(0)} ms` : String(h.heals),
      );
      let b = c[7].querySelector('button');
      if (!b) {
        b = document.createElement('button');
        b.className = 'kill';
        b.dataset.target = h.id;
        b.textContent = 'kill';
        b.title = `SIGKILL the process that runs ${h.id}, as a scenario's kill does`;
        b.addEventListener('click', () => kill(h.id, b));
        c[7].append(b);
      }
      b.disabled = !(s.canKill && h.process.state === 'running');
    }
  }

  function drawTimeline(s) {
    const el = $('timeline');
    const tl = s.timeline;
    text($('timeline-step'), tl ? `${tl.step} (attempt ${tl.attempt})` : '-');
    if (!tl) return;
    const end = Math.max(1e-3, ...tl.slices.map((x) => x.startMs + x.durMs));
    const lanes = new Map();
    for (const x of tl.slices) {
      if (!lanes.has(x.host)) lanes.set(x.host, []);
      lanes.get(x.host).push(x);
    }
    el.replaceChildren(
      ...[...lanes].map(([host, xs]) => {
        const lane = document.createElement('div');
        lane.className = 'lane';
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = host;
        lane.append(name);
        for (const x of xs) {
          const bar = document.createElement('div');
          bar.className = 'bar';
          bar.style.left = `${(100 * x.startMs) / end}%`;
          bar.style.width = `${Math.max(0.3, (100 * x.durMs) / end)}%`;
          bar.style.background = COLORS[x.phase] ?? '#999';
          bar.title = `${host} ${x.phase}: ${x.durMs.toFixed(2)} ms`;
          lane.append(bar);
        }
        return lane;
      }),
    );
  }

  function drawChart(s) {
    const data = [s.history.map((p) => p.step), s.history.map((p) => p.loss), s.history.map((p) => p.ms)];
    if (!chart) {
      const width = Math.max(300, $('chart').clientWidth || 400);
      chart = new uPlot(
        {
          width,
          height: 220,
          scales: { x: { time: false } },
          series: [
            { label: 'step' },
            { label: 'loss', stroke: '#4e79a7', scale: 'loss', width: 1.5 },
            { label: 'step ms', stroke: '#e15759', scale: 'ms', width: 1 },
          ],
          axes: [{ label: 'step' }, { scale: 'loss', label: 'loss' }, { scale: 'ms', side: 1, label: 'ms', grid: { show: false } }],
        },
        data,
        $('chart'),
      );
    } else if (data[0].length !== chart.data[0].length) chart.setData(data);
  }

  function drawRetries(s) {
    const ul = $('retries');
    if (s.retries.length === 0) return;
    if (ul.children.length === s.retries.length && !ul.querySelector('.none')) return;
    ul.replaceChildren(
      ...s.retries.map((r) => {
        const li = document.createElement('li');
        li.textContent = `step ${r.step} attempt ${r.attempt} (${r.kind}): ${r.message}`;
        return li;
      }),
    );
  }

  function addEvent(e) {
    const li = document.createElement('li');
    li.className = e.kind;
    li.textContent = `${new Date(e.at).toISOString().slice(11, 23)} ${e.actor}: ${e.text}`;
    $('events').prepend(li);
  }

  function draw(s) {
    last = s;
    text($('run-id'), s.runId);
    text($('topology'), `${s.topology} (${s.pods} pods x ${s.hostsPerPod} hosts)`);
    text($('state'), s.state);
    text($('committed'), String(s.committed));
    text($('steps'), String(s.steps));
    text($('agree'), s.podsAgree === null ? '-' : s.podsAgree ? 'yes' : 'NO');
    text($('dcn'), s.dcn ? `${bytes(s.dcn.bytesPerSecond)}/s (${bytes(s.dcn.inBytes + s.dcn.outBytes)} in all)` : '-');
    text($('message'), s.message ?? '');
    drawPods(s);
    drawHosts(s);
    drawTimeline(s);
    drawChart(s);
    drawRetries(s);
  }

  const source = new EventSource('events');
  source.addEventListener('status', (m) => {
    const s = JSON.parse(m.data);
    if (!seeded) for (const e of s.events) addEvent(e);
    seeded = true;
    draw(s);
  });
  for (const kind of ['retry', 'restart', 'exit', 'heal', 'fault', 'run', 'restore', 'checkpoint', 'rejected'])
    source.addEventListener(kind, (m) => addEvent(JSON.parse(m.data)));
  // the run is over: the server ends the stream; do not reconnect to a server that is going away
  source.addEventListener('end', () => {
    source.close();
    document.body.dataset.ended = 'true';
  });
  window.lockstepStatus = () => last;
})();
