// Live page of energy-gateway: polls the JSON API (docs/openapi.yaml) every two seconds.
// No framework, no build step, nothing from outside the gateway. Chinese by default
// (`[site] language`), English with the toggle or `?lang=en`; the load curve of seven days with
// its toggle or `?range=week`. `?check-layout` records on
// <body> the elements that stick out of the window (the layout tests read it).
'use strict';

const POLL_MS = 2000;
const SLOW_MS = 60000; // curves and the month's account
const MID_MS = 10000; // alert history and the 15-minute demand
const DEMAND_MS = 15 * 60 * 1000;
const TOKEN_KEY = 'energy-gateway-token';
const LANG_KEY = 'energy-gateway-lang';
const params = new URLSearchParams(location.search);
let token = localStorage.getItem(TOKEN_KEY) || '';
// The reader's choice (URL, then the toggle's), else the site's language.
const chosen = params.get('lang') || localStorage.getItem(LANG_KEY) || '';
let lang = chosen || 'zh';
let range = params.get('range') === 'week' ? 'week' : 'day';
let status = null;
let devicesAnswer = null;
const last = { slow: 0, mid: 0 };
const cache = { load: null, devices: null, month: null, history: null, demand: null };

const T = {
  zh: {
    connecting: '连接中…', live: '实时', reloading: '正在重新加载配置…', token_needed: '需要令牌',
    site_power: '全厂有功功率', demand: '15 分钟需量', today: '今日能耗', month: '本月能耗',
    intensity: '单位增加值能耗与目标进度', health: '设备与数据传输', load_curve: '全厂负荷曲线',
    range_day: '今日', range_week: '近 7 天', device_curves: '各设备今日负荷', devices: '设备',
    device: '设备', state: '状态', active_power: '有功功率', pf: '功率因数', round_trip: '响应时间',
    errors: '错误', alert_history: '告警记录', none: '无', use_token: '使用令牌',
    token_needed_long: '此网关需要 API 令牌（[http] token）。',
    online: '在线', offline: '离线', disabled: '已停用', last_seen: '最后数据', never_seen: '从未读到',
    pf_main: '功率因数', main_meters: '总表', none_configured: '未配置',
    projected: '预测本时段', average_so_far: '本时段平均', minutes_in: '已过', minutes: '分钟',
    contracted: '合同需量', no_contract: '未配置合同需量（demand 告警规则的 contracted_kw）',
    of_contract: '占合同需量', covered: '有数据', minutes_short: '分钟', total_tce: '合计', tce_ev: 'tce（当量值）', computing: '计算中…',
    no_carriers: '尚无计量数据', no_history: '暂无历史数据', tce_so_far: 'tce（本月累计）',
    intensity_unit: 'tce/万元', ytd: '年初至今', cumulative: '累计较基准年', path: '目标路径',
    on_track: '符合目标路径', above_path: '高于目标路径', completion: '完成进度',
    no_intensity: '尚无强度（缺增加值）', completeness: '数据完整率',
    devices_online: '台设备在线', alerts_firing: '条告警正在触发', outbox: '条读数待发送',
    outbox_full: '（发送缓存已满）', firing: '触发', resolved: '恢复', pending: '待定',
    severity_critical: '严重', severity_warning: '警告', severity_info: '提示', stale: '数据过期',
  },
  en: {
    connecting: 'connecting…', live: 'live', reloading: 'reloading…', token_needed: 'token needed',
    site_power: 'Site power', demand: '15-min demand', today: 'Today', month: 'This month',
    intensity: 'Energy intensity vs target path', health: 'Devices and delivery', load_curve: 'Site load',
    range_day: 'Today', range_week: '7 days', device_curves: 'Devices today', devices: 'Devices',
    device: 'device', state: 'state', active_power: 'active power', pf: 'PF', round_trip: 'round trip',
    errors: 'errors', alert_history: 'Alerts', none: 'none', use_token: 'Use token',
    token_needed_long: 'This gateway needs its API token ([http] token).',
    online: 'online', offline: 'offline', disabled: 'disabled', last_seen: 'last seen', never_seen: 'never read',
    pf_main: 'power factor', main_meters: 'main meters', none_configured: 'none configured',
    projected: 'projected for this window', average_so_far: 'average so far', minutes_in: '', minutes: 'min in',
    contracted: 'contracted', no_contract: 'no contracted demand (contracted_kw of a demand alert rule)',
    of_contract: 'of contracted', covered: 'data for', minutes_short: 'min', total_tce: 'total', tce_ev: 'tce (calorific equivalent)', computing: 'computing…',
    no_carriers: 'nothing metered yet', no_history: 'no stored history yet', tce_so_far: 'tce so far',
    intensity_unit: 'tce/10⁴ CNY', ytd: 'year to date', cumulative: 'cumulative vs base year', path: 'target path',
    on_track: 'on track', above_path: 'above the path', completion: 'completion',
    no_intensity: 'no intensity yet (value added missing)', completeness: 'data completeness',
    devices_online: 'devices online', alerts_firing: 'alerts firing', outbox: 'readings waiting for delivery',
    outbox_full: ' (outbox full)', firing: 'firing', resolved: 'resolved', pending: 'pending',
    severity_critical: 'critical', severity_warning: 'warning', severity_info: 'info', stale: 'stale',
  },
};

// Carrier names for the page (the factor table names them in Chinese).
const CARRIERS = {
  electricity: ['电力', 'Electricity'], natural_gas: ['天然气', 'Natural gas'], water: ['水', 'Water'],
  steam: ['蒸汽', 'Steam'], heat: ['热力', 'Heat'], diesel: ['柴油', 'Diesel'], gasoline: ['汽油', 'Gasoline'],
  lpg: ['液化石油气', 'LPG'], coal: ['原煤', 'Coal'], coke: ['焦炭', 'Coke'], crude_oil: ['原油', 'Crude oil'],
  fuel_oil: ['燃料油', 'Fuel oil'], compressed_air: ['压缩空气', 'Compressed air'],
  blast_furnace_gas: ['高炉煤气', 'Blast furnace gas'], softened_water: ['软化水', 'Softened water'],
  deaerated_water: ['除氧水', 'Deaerated water'],
};
const UNITS = { m3: 'm³' };
// Quantities alerts speak of: [Chinese, English, unit].
const QUANTITIES = {
  active_power: ['有功功率', 'active power', 'kW'], reactive_power: ['无功功率', 'reactive power', 'kvar'],
  power_factor: ['功率因数', 'power factor', ''], frequency: ['频率', 'frequency', 'Hz'],
  voltage_l1: ['A 相电压', 'voltage L1', 'V'], voltage_l2: ['B 相电压', 'voltage L2', 'V'], voltage_l3: ['C 相电压', 'voltage L3', 'V'],
  current_l1: ['A 相电流', 'current L1', 'A'], current_l2: ['B 相电流', 'current L2', 'A'], current_l3: ['C 相电流', 'current L3', 'A'],
  energy_import: ['正向有功电能', 'energy import', 'kWh'], gas_flow: ['燃气流量', 'gas flow', 'm³/h'],
  gas_volume: ['燃气累计量', 'gas volume', 'm³'],
};

const $ = (id) => document.getElementById(id);
const text = (id, s) => { $(id).textContent = s; };
const t = (k) => (T[lang] || T.zh)[k] || k;
const locale = () => (lang === 'en' ? 'en-GB' : 'zh-CN');
const sep = () => ' · ';

/// A number rounded for people, as notifications round it (alerting/words.rs): whole numbers
/// from 1000, one decimal from 10, two from 1, three below (one significant digit under
/// 0.001, never a false 0); trailing zeros dropped.
function num(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a > 0 && a < 0.001) return new Intl.NumberFormat(locale(), { maximumSignificantDigits: 1 }).format(v);
  const digits = a >= 1000 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(v);
}
const pct = (v) => (v === null || v === undefined ? '–' : (v > 0 ? '+' : '') + num(v) + ' %');
const unit = (u) => UNITS[u] || u;

function carrierName(id, fallback) {
  const c = CARRIERS[id];
  if (c) return lang === 'en' ? c[1] : c[0];
  return lang === 'en' ? id.replace(/_/g, ' ') : (fallback || id);
}

function siteZone() { return (status && status.site.timezone) || undefined; }
function timeOf(ms, withDate) {
  const o = { timeZone: siteZone(), hour: '2-digit', minute: '2-digit', hour12: false };
  if (withDate) { o.month = '2-digit'; o.day = '2-digit'; }
  try { return new Intl.DateTimeFormat(locale(), o).format(new Date(ms)); } catch (_) { return new Date(ms).toISOString(); }
}
function deviceName(id) {
  const d = devicesAnswer && devicesAnswer.devices.find((x) => x.id === id);
  return (d && d.name) || id;
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  const r = await fetch(path, { headers, cache: 'no-store' });
  if (r.status === 401) {
    $('login').hidden = false;
    throw new HttpError(401, t('token_needed'));
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

function applyLanguage() {
  document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
  for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
  $('lang-toggle').textContent = lang === 'en' ? '中文' : 'EN';
}

// --- times of the site -------------------------------------------------------------------------

/// Site time now (ms) and the RFC 3339 of the site's local midnight, from the status answer.
function siteNow() { return status ? Date.parse(status.time) : Date.now(); }
function siteMidnight() {
  const s = status.time; // 2026-11-30T05:01:00.000+08:00
  const offset = s.slice(s.search(/(Z|[+-]\d\d:\d\d)$/));
  return s.slice(0, 10) + 'T00:00:00' + offset;
}

// --- charts ------------------------------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
function svgEl(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

/// A line chart of [ms, value] points over [from, to]; gaps longer than two steps break the line.
function drawChart(box, points, o) {
  box.replaceChildren();
  if (!points.length) {
    const p = document.createElement('div');
    p.className = 'empty';
    p.textContent = t('no_history');
    box.append(p);
    return;
  }
  const w = Math.max(box.clientWidth, 200), h = o.height;
  const left = 44, right = 8, top = 8, bottom = 20;
  const hi = Math.max(...points.map((p) => p[1]), o.limit || 0) * 1.1 || 1;
  const lo = Math.min(0, ...points.map((p) => p[1]));
  const x = (ms) => left + ((ms - o.from) / (o.to - o.from)) * (w - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
  const svg = svgEl('svg', { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: 'img', class: 'curve' });
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(svgEl('line', { class: 'grid', x1: left, x2: w - right, y1: y(v), y2: y(v) }));
    const l = svgEl('text', { x: left - 4, y: y(v) + 4, 'text-anchor': 'end' });
    l.textContent = num(v);
    svg.append(l);
  }
  for (const tick of o.ticks) {
    const l = svgEl('text', { x: x(tick), y: h - 4, 'text-anchor': 'middle' });
    l.textContent = timeOf(tick, o.dates);
    if (x(tick) > left + 10 && x(tick) < w - 20) svg.append(l);
  }
  if (o.limit) svg.append(svgEl('line', { class: 'limit', x1: left, x2: w - right, y1: y(o.limit), y2: y(o.limit) }));
  let d = '';
  let prev = null;
  for (const [ms, v] of points) {
    d += (prev === null || ms - prev > 2 * o.step ? 'M' : 'L') + x(ms + o.step / 2).toFixed(1) + ',' + y(v).toFixed(1);
    prev = ms;
  }
  svg.append(svgEl('path', { class: 'line', d, 'data-points': String(points.length) }));
  // The last bucket as a dot: a curve of one bucket is visible too.
  const [lms, lv] = points[points.length - 1];
  svg.append(svgEl('circle', { class: 'dot', cx: x(lms + o.step / 2).toFixed(1), cy: y(lv).toFixed(1), r: 3 }));
  box.append(svg);
}

function dayTicks(from, to, stepMs) {
  const out = [];
  for (let ms = from; ms <= to; ms += stepMs) out.push(ms);
  return out;
}

/// Per-step means of the devices' active power since `from` (ms), from the history API
/// (`/api/v1/history`: raw readings or minute aggregates, whichever tier holds the range):
/// `{ series: [{ device, points: [[step start ms, mean]] }], sum }`. A step without a usable
/// reading is absent; `sum` adds the devices' means only where every device has one, so a
/// meter that was offline leaves a gap instead of a dip.
async function curves(devices, from, stepS) {
  const answers = [];
  for (let i = 0; i < devices.length; i += 4) {
    answers.push(...await Promise.all(devices.slice(i, i + 4).map((id) => api(
      `/api/v1/history?device=${encodeURIComponent(id)}&quantity=active_power&from=${from}&step=${stepS}s`))));
  }
  const series = answers.map((h, k) => ({
    device: devices[k],
    points: h.points.filter((p) => p.mean !== null).map((p) => [p.ts_ms, p.mean]),
  }));
  const sum = [];
  if (series.length) {
    const others = series.slice(1).map((s) => new Map(s.points));
    for (const [ms, v] of series[0].points) {
      let total = v;
      for (const m of others) total = m.has(ms) ? total + m.get(ms) : NaN;
      if (!Number.isNaN(total)) sum.push([ms, total]);
    }
  }
  return { series, sum };
}

async function loadCurves() {
  const meters = status.site.main_meters;
  const midnight = Date.parse(siteMidnight());
  const now = siteNow();
  if (meters.length) {
    const week = range === 'week';
    const from = week ? midnight - 6 * 86400000 : midnight;
    const step = week ? 1800 : 300;
    const c = await curves(meters, from, step);
    cache.load = { c, from, to: week ? midnight + 86400000 : midnight + 86400000, step: step * 1000, week };
  }
  const powered = (devicesAnswer ? devicesAnswer.devices : [])
    .filter((d) => d.enabled && d.latest.some((r) => r.quantity === 'active_power'))
    .map((d) => d.id);
  if (powered.length) {
    const c = await curves(powered, midnight, 900);
    cache.devices = { c, from: midnight, to: midnight + 86400000, now };
  }
}

function renderCurves() {
  const box = $('load-chart');
  if (cache.load) {
    const l = cache.load;
    drawChart(box, l.c.sum, {
      from: l.from, to: l.to, step: l.step, height: 220, limit: status.site.contracted_kw,
      ticks: l.week ? dayTicks(l.from, l.to, 86400000) : dayTicks(l.from, l.to, 6 * 3600000), dates: l.week,
    });
  } else {
    drawChart(box, [], {});
  }
  const minis = $('device-curves');
  minis.replaceChildren();
  if (!cache.devices) return;
  const d = cache.devices;
  // Every figure in place first: a chart's width is its grid column's.
  const charts = d.c.series.map((s) => {
    const fig = document.createElement('div');
    fig.className = 'mini';
    fig.dataset.device = s.device;
    const h = document.createElement('h3');
    const lastPt = s.points[s.points.length - 1];
    h.textContent = deviceName(s.device) + (lastPt ? ' · ' + num(lastPt[1]) + ' kW' : '');
    const chart = document.createElement('div');
    fig.append(h, chart);
    minis.append(fig);
    return [chart, s];
  });
  for (const [chart, s] of charts) {
    drawChart(chart, s.points, { from: d.from, to: d.to, step: 900000, height: 90, ticks: dayTicks(d.from, d.to, 6 * 3600000) });
  }
}

// --- 15-minute demand --------------------------------------------------------------------------

async function loadDemand() {
  const meters = status.site.main_meters;
  if (!meters.length) { cache.demand = null; return; }
  const now = siteNow();
  const slot = now - (now % DEMAND_MS);
  const c = await curves(meters, slot, 60);
  cache.demand = { c, slot, now };
}

function renderDemand() {
  const contracted = status.site.contracted_kw;
  const bar = $('demand-bar');
  const mark = $('demand-limit');
  const d = cache.demand;
  text('demand-contracted', contracted ? t('contracted') + ' ' + num(contracted) + ' kW' : t('no_contract'));
  if (!d || !d.c.sum.length || status.site_power_kw === null) {
    text('demand-now', '–');
    text('demand-projection', '');
    bar.style.width = '0';
    return;
  }
  // Energy of the window so far from the per-minute means, over the minutes that have data;
  // minutes without (a restart, a meter offline) are taken at the average of those with, and
  // said so. Then the present power to the window's end.
  let kwh = 0;
  let covered = 0;
  for (const [ms, v] of d.c.sum) {
    const span = Math.max(Math.min(ms + 60000, d.now) - Math.max(ms, d.slot), 0);
    kwh += (v * span) / 3600000;
    covered += span;
  }
  const elapsed = Math.max(d.now - d.slot, 1);
  const average = covered > 0 ? kwh / (covered / 3600000) : status.site_power_kw;
  const projected = ((average * elapsed + status.site_power_kw * (DEMAND_MS - elapsed)) / 3600000) / 0.25;
  const partial = covered < elapsed - 60000;
  text('demand-now', num(projected) + ' kW');
  text('demand-projection', t('projected') + sep() + t('average_so_far') + ' ' + num(average) + ' kW'
    + sep() + (lang === 'en' ? '' : t('minutes_in') + ' ') + Math.floor(elapsed / 60000) + ' ' + t('minutes')
    + (partial ? sep() + t('covered') + ' ' + Math.round(covered / 60000) + ' ' + t('minutes_short') : ''));
  if (contracted) {
    const scale = Math.max(contracted * 1.25, projected);
    bar.style.width = ((projected / scale) * 100).toFixed(1) + '%';
    bar.className = projected > contracted ? 'over' : '';
    mark.hidden = false;
    mark.style.left = ((contracted / scale) * 100).toFixed(1) + '%';
    $('demand-contracted').textContent += sep() + num((projected / contracted) * 100) + ' % ' + t('of_contract');
  } else {
    bar.style.width = '0';
    mark.hidden = true;
  }
}

// --- cards -------------------------------------------------------------------------------------

function carrierRows(tbody, carriers) {
  tbody.replaceChildren();
  for (const c of carriers) {
    const tr = document.createElement('tr');
    tr.dataset.carrier = c.carrier;
    const name = document.createElement('td');
    name.textContent = carrierName(c.carrier, c.name);
    const q = document.createElement('td');
    q.className = 'q';
    q.textContent = num(c.quantity) + ' ' + unit(c.unit);
    const tce = document.createElement('td');
    tce.className = 't';
    tce.textContent = num(c.tce) + ' tce';
    tr.append(name, q, tce);
    tbody.append(tr);
  }
}

function renderStatus(s) {
  text('site-name', s.site.name || s.site.id);
  text('site-meta', [s.site.id, s.site.park, s.site.timezone].filter(Boolean).join(' · '));
  text('site-clock', timeOf(siteNow(), true));
  text('version', 'energy-gateway ' + s.version);

  // Site power: stale when a main meter is offline.
  const mains = (devicesAnswer ? devicesAnswer.devices : []).filter((d) => s.site.main_meters.includes(d.id));
  const offline = mains.filter((d) => !(d.status && d.status.online));
  text('site-power', s.site_power_kw === null ? '–' : num(s.site_power_kw) + ' kW');
  $('site-power').classList.toggle('stale', offline.length > 0);
  const pfs = mains.map((d) => d.latest.find((r) => r.quantity === 'power_factor')).filter(Boolean);
  text('power-factor', pfs.length ? t('pf_main') + ' ' + pfs.map((r) => Math.abs(r.value).toFixed(2)).join(' / ') : '');
  let meters = t('main_meters') + ': ' + (s.site.main_meters.map(deviceName).join(', ') || t('none_configured'));
  for (const d of offline) meters += sep() + deviceName(d.id) + ' ' + lastSeen(d);
  text('power-meters', meters);

  const acc = s.accounts || {};
  const today = acc.today;
  const tb = document.querySelector('#carriers-today tbody');
  if (today && today.carriers && today.carriers.length) {
    carrierRows(tb, today.carriers);
    text('today-total', t('total_tce') + ' ' + num(today.tce) + ' ' + t('tce_ev') + sep() + today.date);
  } else {
    tb.replaceChildren();
    text('today-total', today ? t('no_carriers') : (acc.today_error || t('computing')));
  }

  const m = acc.month;
  const bar = $('intensity-bar');
  const r = cache.month;
  if (m) {
    if (m.intensity_tce_per_10k_cny === null) {
      text('intensity', num(m.comprehensive_energy_tce));
      text('intensity-unit', t('tce_so_far'));
    } else {
      text('intensity', num(m.intensity_tce_per_10k_cny));
      text('intensity-unit', t('intensity_unit') + ' (' + m.period + ')');
    }
    const p = r && r.period === m.period ? r.progress : null;
    text('intensity-ytd', p && p.ytd_intensity_tce_per_10k_cny !== null
      ? t('ytd') + ' ' + num(p.ytd_intensity_tce_per_10k_cny) + ' ' + t('intensity_unit') + sep()
        + t('cumulative') + ' ' + pct(p.cumulative_change_pct) + sep() + t('path') + ' ' + pct(p.path_change_pct)
        + (p.completion_pct === null ? '' : sep() + t('completion') + ' ' + num(p.completion_pct) + ' %')
      : (m.intensity_tce_per_10k_cny === null ? t('no_intensity') : ''));
    const target = m.target_path_intensity_tce_per_10k_cny;
    if (m.intensity_tce_per_10k_cny !== null && target !== null) {
      const onTrack = p ? p.on_track : m.on_track;
      text('intensity-target', t('path') + ' ' + num(target) + ' ' + t('intensity_unit') + ' (' + pct(m.path_change_pct) + ', '
        + m.baseline_year + ')' + (onTrack === null || onTrack === undefined ? '' : sep() + (onTrack ? t('on_track') : t('above_path'))));
      const ratio = Math.min(m.intensity_tce_per_10k_cny / target, 1.5);
      bar.style.width = (ratio / 1.5 * 100).toFixed(1) + '%';
      bar.className = m.intensity_tce_per_10k_cny > target ? 'over' : '';
    } else {
      text('intensity-target', '');
      bar.style.width = '0';
    }
    text('month-note', t('completeness') + ' ' + num(m.completeness_pct) + ' %' + (m.notes.length ? sep() + m.notes[0] : ''));
    $('month-note').title = m.notes.join('\n');
  } else {
    text('intensity', '…');
    text('intensity-unit', '');
    text('intensity-ytd', '');
    text('intensity-target', acc.month_error || t('computing'));
  }
  const mb = document.querySelector('#carriers-month tbody');
  if (r && r.carriers) {
    carrierRows(mb, r.carriers);
    text('month-total', t('total_tce') + ' ' + num(r.comprehensive_energy_tce) + ' ' + t('tce_ev') + sep() + r.period);
  } else {
    mb.replaceChildren();
    text('month-total', t('computing'));
  }

  text('devices-online', s.devices.online + '/' + s.devices.total + ' ');
  const small = document.createElement('span');
  small.className = 'unit';
  small.textContent = t('devices_online');
  $('devices-online').append(small);
  text('alerts-count', s.alerts_firing + ' ' + t('alerts_firing'));
  text('outbox', num(s.outbox.rows) + ' ' + t('outbox') + (s.outbox.full ? t('outbox_full') : ''));
}

function lastSeen(dev) {
  const ms = dev.status && dev.status.last_success_ms;
  return ms ? t('last_seen') + ' ' + timeOf(ms, siteNow() - ms > 20 * 3600000) : t('never_seen');
}

function renderAlerts(a) {
  const ul = $('alerts');
  ul.replaceChildren();
  if (!a || !a.events.length) {
    const li = document.createElement('li');
    li.className = 'none';
    li.textContent = t('none');
    ul.append(li);
    return;
  }
  for (const e of a.events) {
    const li = document.createElement('li');
    li.className = e.state === 'resolved' ? 'resolved' : e.severity;
    const when = document.createElement('span');
    when.className = 'when';
    when.textContent = timeOf(e.ts_ms, true);
    // Device name, quantity and a rounded value; the gateway's own words in the tooltip.
    const q = QUANTITIES[e.quantity];
    const what = q ? (lang === 'en' ? q[1] : q[0]) : (e.quantity || '').replace(/_/g, ' ');
    const value = e.value === null || e.value === undefined ? '' : ' ' + num(e.value) + (q && q[2] ? ' ' + q[2] : '');
    li.append(when, t('severity_' + e.severity) + ' · ' + t(e.state) + ' · ' + deviceName(e.device) + ' ' + what + value + ' · ' + e.rule);
    li.title = e.message;
    ul.append(li);
  }
}

function renderDevices(d) {
  const body = document.querySelector('#devices tbody');
  body.replaceChildren();
  for (const dev of d.devices) {
    const tr = document.createElement('tr');
    tr.dataset.device = dev.id;
    const st = dev.status;
    const online = dev.enabled && st && st.online;
    if (dev.enabled && !online) tr.className = 'stale';
    const power = dev.latest.find((r) => r.quantity === 'active_power');
    const pf = dev.latest.find((r) => r.quantity === 'power_factor');
    const name = document.createElement('td');
    name.textContent = dev.name || dev.id;
    if (dev.name) {
      const id = document.createElement('span');
      id.className = 'id';
      id.textContent = dev.id;
      name.append(id);
    }
    const state = document.createElement('td');
    state.className = online ? 'state-online' : 'state-offline';
    state.textContent = !dev.enabled ? t('disabled') : online ? t('online') : t('offline');
    if (dev.enabled && !online) {
      const seen = document.createElement('span');
      seen.className = 'id last-seen';
      seen.textContent = lastSeen(dev);
      state.append(seen);
    }
    tr.append(name, state);
    for (const [v, cls] of [
      [power ? num(power.value) + ' kW' : '–', 'num'],
      [pf ? Math.abs(pf.value).toFixed(2) : '–', 'num'],
      [st ? num(st.last_round_trip_ms) + ' ms' : '–', 'num wide'],
      [st ? num(st.failures) : '–', 'num wide'],
    ]) {
      const td = document.createElement('td');
      td.className = cls;
      td.textContent = v;
      tr.append(td);
    }
    body.append(tr);
  }
}

function checkLayout() {
  if (!params.has('check-layout')) return;
  const vw = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > vw + 0.5 || r.left < -0.5) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''));
  }
  document.body.dataset.viewport = String(vw);
  document.body.dataset.scrollWidth = String(document.documentElement.scrollWidth);
  document.body.dataset.overflowing = out.slice(0, 20).join(' ');
}

function render() {
  if (!status) return;
  applyLanguage();
  if (devicesAnswer) renderDevices(devicesAnswer);
  renderStatus(status);
  renderDemand();
  renderCurves();
  renderAlerts(cache.history);
  checkLayout();
}

async function tick() {
  try {
    const [s, d] = await Promise.all([api('/api/v1/status'), api('/api/v1/devices')]);
    status = s;
    devicesAnswer = d;
    if (!chosen && localStorage.getItem(LANG_KEY) === null) lang = s.site.language || 'zh';
    const now = Date.now();
    if (now - last.mid >= MID_MS) {
      last.mid = now;
      const [h] = await Promise.all([api('/api/v1/alerts/history?limit=20'), loadDemand()]);
      cache.history = h;
    }
    if (now - last.slow >= SLOW_MS) {
      last.slow = now;
      const period = (s.accounts && s.accounts.month && s.accounts.month.period) || s.time.slice(0, 7);
      const [month] = await Promise.all([api('/api/v1/accounts/' + period).catch(() => null), loadCurves()]);
      cache.month = month;
    }
    render();
    setConn(true, t('live') + ' · ' + timeOf(siteNow()));
  } catch (e) {
    if (status) render();
    setConn(false, e.status === 503 ? t('reloading') : e.message);
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
$('lang-toggle').addEventListener('click', () => {
  lang = lang === 'en' ? 'zh' : 'en';
  localStorage.setItem(LANG_KEY, lang);
  render();
});
function showRange() {
  $('range-day').classList.toggle('on', range === 'day');
  $('range-week').classList.toggle('on', range === 'week');
}
for (const [id, r] of [['range-day', 'day'], ['range-week', 'week']]) {
  $(id).addEventListener('click', () => {
    range = r;
    showRange();
    last.slow = 0;
  });
}
showRange();
window.addEventListener('resize', () => { if (status) renderCurves(); });

applyLanguage();
tick();
