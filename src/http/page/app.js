// Live page of energy-gateway: polls the JSON API (docs/openapi.yaml) every two seconds.
// No framework, no build step, nothing from outside the gateway.
'use strict';

const POLL_MS = 2000;
const HISTORY = 150; // site power samples in the sparkline (5 minutes)
const TOKEN_KEY = 'energy-gateway-token';
let token = localStorage.getItem(TOKEN_KEY) || '';
const powerHistory = [];

const $ = (id) => document.getElementById(id);
const text = (id, s) => { $(id).textContent = s; };

function num(v, digits) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  const r = await fetch(path, { headers, cache: 'no-store' });
  if (r.status === 401) {
    $('login').hidden = false;
    throw new HttpError(401, 'token needed');
  }
  if (!r.ok) {
    let msg = 'HTTP ' + r.status;
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new HttpError(r.status, msg);
  }
  return r.json();
}

function setConn(ok, label) {
  const el = $('conn');
  el.className = 'pill ' + (ok ? 'ok' : 'bad');
  el.textContent = label;
}

function drawSpark() {
  const pts = powerHistory;
  if (pts.length < 2) { $('spark-line').setAttribute('points', ''); return; }
  const lo = Math.min(...pts), hi = Math.max(...pts);
  const span = hi - lo || 1;
  const step = 300 / (HISTORY - 1);
  const x0 = 300 - (pts.length - 1) * step;
  const coords = pts.map((v, i) => (x0 + i * step).toFixed(1) + ',' + (56 - ((v - lo) / span) * 52).toFixed(1));
  $('spark-line').setAttribute('points', coords.join(' '));
}

function renderStatus(s) {
  text('site-name', s.site.name || s.site.id);
  text('site-meta', [s.site.id, s.site.park, s.site.timezone].filter(Boolean).join(' · '));
  text('version', 'energy-gateway ' + s.version);
  text('site-power', s.site_power_kw === null ? '–' : num(s.site_power_kw, 1) + ' kW');
  text('power-meters', 'main meters: ' + (s.site.main_meters.join(', ') || 'none configured'));
  if (s.site_power_kw !== null) {
    powerHistory.push(s.site_power_kw);
    if (powerHistory.length > HISTORY) powerHistory.shift();
    drawSpark();
  }
  text('devices-online', s.devices.online + '/' + s.devices.total);
  text('readings-rate', s.readings_per_second === null ? '' : num(s.readings_per_second, 1) + ' readings/s · ' + s.last_committed_id + ' stored');

  const acc = s.accounts || {};
  const t = acc.today;
  text('energy-today', t && t.energy_kwh !== null ? num(t.energy_kwh, 2) + ' kWh' : (acc.today_error ? 'n/a' : '…'));
  text('tce-today', t ? (t.tce === null ? 'tce: no accounted meters' : num(t.tce, 4) + ' tce (equivalent value) · ' + t.date)
    : (acc.today_error ? 'accounts: ' + acc.today_error : 'computing…'));

  const m = acc.month;
  const bar = $('intensity-bar');
  if (m) {
    if (m.intensity_tce_per_10k_cny === null) {
      text('intensity', num(m.comprehensive_energy_tce, 3));
      text('intensity-unit', 'tce so far');
    } else {
      text('intensity', num(m.intensity_tce_per_10k_cny, 4));
      text('intensity-unit', 'tce/10⁴ CNY');
    }
    const target = m.target_path_intensity_tce_per_10k_cny;
    if (m.intensity_tce_per_10k_cny !== null && target !== null) {
      text('intensity-target', 'target path ' + num(target, 4) + ' (' + num(m.path_change_pct, 1) + ' % vs ' + m.baseline_year + ') · '
        + (m.on_track ? 'on track' : 'above the path'));
      const ratio = Math.min(m.intensity_tce_per_10k_cny / target, 1.5);
      bar.style.width = (ratio / 1.5 * 100).toFixed(1) + '%';
      bar.className = m.intensity_tce_per_10k_cny > target ? 'over' : '';
    } else {
      text('intensity-target', m.period + ': ' + (m.intensity_tce_per_10k_cny === null ? 'no intensity yet' : 'no baseline to compare with'));
      bar.style.width = '0';
    }
    const note = m.notes.length ? m.notes[0] : 'data completeness ' + num(m.completeness_pct, 1) + ' %';
    text('month-note', note);
    $('month-note').title = m.notes.join('\n');
  } else {
    text('intensity', '…');
    text('intensity-unit', '');
    text('intensity-target', acc.month_error ? 'accounts: ' + acc.month_error : 'computing…');
  }
  text('alerts-count', String(s.alerts_firing));
  text('outbox', s.outbox.rows + ' readings waiting for delivery' + (s.outbox.full ? ' (outbox full)' : ''));
}

function renderAlerts(a) {
  const ul = $('alerts');
  ul.replaceChildren();
  if (!a.alerts.length) {
    const li = document.createElement('li');
    li.className = 'none';
    li.textContent = 'none';
    ul.append(li);
    return;
  }
  for (const e of a.alerts) {
    const li = document.createElement('li');
    li.className = e.severity;
    li.textContent = e.severity + ' · ' + e.message + ' · since ' + e.time;
    ul.append(li);
  }
}

function renderDevices(d) {
  const body = document.querySelector('#devices tbody');
  body.replaceChildren();
  for (const dev of d.devices) {
    const tr = document.createElement('tr');
    const st = dev.status;
    const power = dev.latest.find((r) => r.quantity === 'active_power');
    const cells = [
      dev.name ? dev.id + ' (' + dev.name + ')' : dev.id,
      !dev.enabled ? 'disabled' : st && st.online ? 'online' : 'offline',
      power ? num(power.value, 1) + ' kW' : '–',
      st ? num(st.last_round_trip_ms, 1) + ' ms' : '–',
      st ? String(st.requests) : '–',
      st ? String(st.failures) : '–',
    ];
    cells.forEach((c, i) => {
      const td = document.createElement('td');
      td.textContent = c;
      if (i === 1) td.className = c === 'online' ? 'state-online' : 'state-offline';
      if (i >= 2) td.classList.add('num');
      tr.append(td);
    });
    body.append(tr);
  }
}

async function tick() {
  try {
    const [s, d, a] = await Promise.all([
      api('/api/v1/status'), api('/api/v1/devices'), api('/api/v1/alerts/active'),
    ]);
    renderStatus(s);
    renderDevices(d);
    renderAlerts(a);
    setConn(true, 'live · ' + new Date().toLocaleTimeString());
  } catch (e) {
    setConn(false, e.status === 503 ? 'reloading…' : e.message);
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
});

tick();
