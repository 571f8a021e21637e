// The live dashboard: one self-contained page (no CDN: Chart.js comes from this server's
// /chart.js) that polls /api/state each second and redraws the loss and metric curves, the ring
// (each rank's compute and wait over its recent steps, side by side, the straggler and the ranks
// waiting on it marked) and the event list. The state's shape is TelemetrySnapshot.

/** How often the page asks for the state. */
export const DASHBOARD_POLL_MS = 1000;

export function dashboardHtml(title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ringtrain: ${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<style>
  body { font: 14px system-ui, sans-serif; margin: 1em 2em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
  #status { color: #555; margin-bottom: 1em; }
  .charts { display: flex; gap: 2em; flex-wrap: wrap; } .charts > div { width: 560px; height: 280px; }
  #ring { display: flex; gap: 1em; flex-wrap: wrap; }
  .rank { border: 2px solid #ccc; border-radius: 6px; padding: .5em; width: 330px; }
  .rank.straggler { border-color: #d62728; background: #fff1f0; }
  .rank.waiting { border-color: #ff9f1c; background: #fff8ec; }
  .rank .badge { font-weight: bold; margin-left: .5em; }
  .rank.straggler .badge { color: #d62728; } .rank.waiting .badge { color: #c77700; }
  .rank .bars { height: 140px; }
  table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #eee; }
  tr.warn td { color: #a33; }
</style>
</head>
<body>
<h1>ringtrain: ${escapeHtml(title)}</h1>
<div id="status">connecting…</div>
<div class="charts"><div><canvas id="loss"></canvas></div><div><canvas id="metrics"></canvas></div></div>
<h2>Ring</h2>
<div id="ring"></div>
<h2>Events</h2>
<table><thead><tr><th>time</th><th>kind</th><th>rank</th><th>step</th><th>detail</th></tr></thead><tbody id="events"></tbody></table>
<script src="/chart.js"></script>
<script>
${CLIENT_SCRIPT}
</script>
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Runs in the browser; plain ES2020, no build step.
const CLIENT_SCRIPT = `
'use strict';
const COLORS = ['#1f77b4', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
const lineOptions = (title) => ({
  animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
  plugins: { title: { display: true, text: title } },
  scales: { x: { type: 'linear', title: { display: true, text: 'step' } } },
});
const lossChart = new Chart(document.getElementById('loss'), {
  type: 'line',
  data: { datasets: [
    { label: 'train loss', data: [], borderColor: '#1f77b4', pointRadius: 0, borderWidth: 1.5 },
    { label: 'validation loss', data: [], borderColor: '#d62728', pointRadius: 3 },
  ] },
  options: lineOptions('loss'),
});
const metricChart = new Chart(document.getElementById('metrics'), {
  type: 'line', data: { datasets: [] }, options: lineOptions('validation metrics'),
});
const rankCharts = new Map();

function renderCurves(state) {
  lossChart.data.datasets[0].data = state.train.map((p) => ({ x: p.step, y: p.loss }));
  lossChart.data.datasets[1].data = state.validation
    .filter((v) => v.metrics.loss !== undefined).map((v) => ({ x: v.step, y: v.metrics.loss }));
  lossChart.update('none');
  const names = [...new Set(state.validation.flatMap((v) => Object.keys(v.metrics)))].filter((n) => n !== 'loss');
  metricChart.data.datasets = names.map((name, i) => ({
    label: 'validation ' + name, borderColor: COLORS[i % COLORS.length], pointRadius: 3,
    data: state.validation.filter((v) => v.metrics[name] !== undefined).map((v) => ({ x: v.step, y: v.metrics[name] })),
  }));
  metricChart.update('none');
}

function rankCard(view, generation) {
  const id = 'rank-' + view.rank;
  let card = document.getElementById(id);
  if (card === null) {
    card = document.createElement('div');
    card.id = id;
    card.innerHTML = '<div class="head"></div><div class="bars"><canvas></canvas></div>';
    document.getElementById('ring').appendChild(card);
    rankCharts.set(view.rank, new Chart(card.querySelector('canvas'), {
      type: 'bar',
      data: { labels: [], datasets: [
        { label: 'compute ms', data: [], backgroundColor: '#1f77b4' },
        { label: 'wait ms', data: [], backgroundColor: '#ff9f1c' },
      ] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { labels: { boxWidth: 10 } } }, scales: { x: { ticks: { maxTicksLimit: 6 } } } },
    }));
  }
  card.className = 'rank' + (view.straggler ? ' straggler' : '') + (view.waiting ? ' waiting' : '');
  card.dataset.rank = String(view.rank);
  card.dataset.straggler = String(view.straggler);
  card.dataset.waiting = String(view.waiting);
  const badge = view.straggler ? 'straggler' : view.waiting ? 'waiting on a straggler' : '';
  const strong = document.createElement('strong');
  strong.textContent = 'rank ' + view.rank;
  const badgeEl = document.createElement('span');
  badgeEl.className = 'badge';
  badgeEl.textContent = badge;
  const info = document.createElement('div');
  info.textContent = view.host + ' (pid ' + view.pid + '), generation ' + generation +
    ', median compute ' + view.medianComputeMs.toFixed(1) + ' ms, wait ' + view.medianWaitMs.toFixed(1) + ' ms';
  card.querySelector('.head').replaceChildren(strong, badgeEl, info);
  const chart = rankCharts.get(view.rank);
  chart.data.labels = view.steps;
  chart.data.datasets[0].data = view.computeMs;
  chart.data.datasets[1].data = view.waitMs;
  chart.update('none');
}

function renderRing(state) {
  const ranks = new Set(state.ring.map((v) => v.rank));
  for (const [rank, chart] of rankCharts) {
    if (ranks.has(rank)) continue;
    chart.destroy();
    rankCharts.delete(rank);
    document.getElementById('rank-' + rank).remove();
  }
  for (const view of state.ring) rankCard(view, state.generation);
}

function renderEvents(state) {
  const body = document.getElementById('events');
  body.replaceChildren(...state.events.slice().reverse().map((e) => {
    const row = document.createElement('tr');
    if (e.kind !== 'join' && e.kind !== 'recovery') row.className = 'warn';
    for (const text of [e.at, e.kind, e.rank, e.step, e.detail]) {
      const cell = document.createElement('td');
      cell.textContent = String(text);
      row.appendChild(cell);
    }
    return row;
  }));
}

async function poll() {
  try {
    const response = await fetch('/api/state', { cache: 'no-store' });
    if (!response.ok) throw new Error('HTTP ' + response.status);
    const state = await response.json();
    renderCurves(state);
    renderRing(state);
    renderEvents(state);
    document.getElementById('status').textContent = 'step ' + state.step + ', epoch ' + (state.epoch + 1) +
      ', ' + state.worldSize + ' ranks, generation ' + state.generation + ', ' +
      Math.round(state.samplesPerSecond) + ' samples/s (last steps)';
  } catch (error) {
    document.getElementById('status').textContent = 'no answer from the coordinator (' + error.message + '); the run may have ended';
  }
  setTimeout(poll, ${DASHBOARD_POLL_MS});
}
poll();
`;
