// RollerTrace console: the only script the pages run (served from 'self';
// the Content-Security-Policy forbids inline script). Device data is only ever
// put into the page with textContent, never as HTML.
'use strict';

function addCell(row, text, href) {
  const td = document.createElement('td');
  if (href) {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
  row.appendChild(td);
}

// Violations and locks that happen while the page is open, polled every second.
function startLive(box) {
  let since = Number(box.dataset.since);
  const body = box.querySelector('tbody');
  const status = box.querySelector('.live-status');
  async function poll() {
    try {
      const r = await fetch('/api/live?since=' + since, {credentials: 'same-origin'});
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const live = await r.json();
      for (const item of live.items) {
        const row = document.createElement('tr');
        row.className = 'new';
        addCell(row, item.time);
        addCell(row, item.kind);
        addCell(row, item.device, '/roller/' + encodeURIComponent(item.device));
        addCell(row, item.rule);
        addCell(row, item.detail);
        body.insertBefore(row, body.firstChild);
      }
      since = live.next_since;
      status.textContent = 'live · checked ' + live.checked;
    } catch (e) {
      status.textContent = 'live updates paused: ' + e.message;
    }
    setTimeout(poll, 1000);
  }
  poll();
}

// The roller's wear against its rated life, from the page's JSON data.
function drawWear(canvas) {
  const data = JSON.parse(document.getElementById('wear-data').textContent);
  if (typeof Chart === 'undefined' || data.points.length === 0) return;
  new Chart(canvas, {
    type: 'line',
    data: {
      labels: data.points.map(p => p.label),
      datasets: [
        {label: 'wear at session start (%)', data: data.points.map(p => p.wear), borderColor: '#b03030'},
        {label: 'rated life (100 %)', data: data.points.map(() => 100), borderColor: '#888', borderDash: [4, 4],
         pointRadius: 0},
      ],
    },
    options: {animation: false, scales: {y: {min: 0, suggestedMax: 110}}},
  });
}

document.addEventListener('DOMContentLoaded', () => {
  for (const box of document.querySelectorAll('.live')) startLive(box);
  const wear = document.getElementById('wear-chart');
  if (wear) drawWear(wear);
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', e => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  }
  for (const b of document.querySelectorAll('button.print')) b.addEventListener('click', () => window.print());
});
