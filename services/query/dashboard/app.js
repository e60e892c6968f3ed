// TopUp Analytics dashboard: one page over the query service's JSON API. No build step, no
// third-party code; the whole view state lives in the URL so a view can be bookmarked.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'topup_api_key';
const RANGES = { day: 'day', '7d': '7d', '30d': '30d', month: 'month', '6mo': '6mo', '12mo': '12mo' };
const TOP_STATS = [
  ['visitors', 'Visitors', (v) => v.toLocaleString()],
  ['visits', 'Visits', (v) => v.toLocaleString()],
  ['pageviews', 'Pageviews', (v) => v.toLocaleString()],
  ['views_per_visit', 'Views per visit', (v) => v.toFixed(2)],
  ['bounce_rate', 'Bounce rate', (v) => `${v}%`],
  ['visit_duration', 'Visit duration', (v) => duration(v)],
];
// Cards, their tabs, and the tier field each tab needs (tabs for uncollected fields are hidden).
const CARDS = [
  ['Sources', [['Channels', 'visit:channel', 'channel'], ['Sources', 'visit:source', 'referrer_source'],
    ['Campaigns', 'visit:utm_campaign', 'utm_campaign']]],
  ['Pages', [['Top pages', 'event:page', 'pathname'], ['Entry pages', 'visit:entry_page', 'pathname'],
    ['Exit pages', 'visit:exit_page', 'pathname']]],
  ['Locations', [['Countries', 'visit:country', 'country'], ['Regions', 'visit:region', 'region'],
    ['Cities', 'visit:city', 'city']]],
  ['Devices', [['Devices', 'visit:device', 'device'], ['Browsers', 'visit:browser', 'browser'],
    ['Systems', 'visit:os', 'os'], ['Screens', 'visit:screen', 'screen']]],
  ['Events', [['Custom events', 'event:name', 'name'], ['Properties', 'props', 'props']]],
];

const state = { sites: [], tiers: [], site: null, tab: {}, realtimeTimer: 0 };

// -- the URL is the state -------------------------------------------------------------------

function view() {
  const q = new URLSearchParams(location.search);
  let filters = [];
  try { filters = JSON.parse(q.get('filters') || '[]'); } catch (e) { filters = []; }
  return { site: q.get('site'), page: q.get('page') || 'dashboard', range: q.get('range') || '30d',
    from: q.get('from'), to: q.get('to'), filters };
}

function go(changes, replace) {
  const next = { ...view(), ...changes };
  const q = new URLSearchParams();
  if (next.site) q.set('site', next.site);
  if (next.page !== 'dashboard') q.set('page', next.page);
  q.set('range', next.range);
  if (next.range === 'custom') { q.set('from', next.from); q.set('to', next.to); }
  if (next.filters.length) q.set('filters', JSON.stringify(next.filters));
  history[replace ? 'replaceState' : 'pushState'](null, '', `?${q}`);
  render();
}

// -- the API ------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, 'Content-Type': 'application/json' },
  });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    show('sign-in');
    throw new Error('Your key was not accepted: sign in again.');
  }
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && body.error ? body.error : `The server answered ${response.status}.`);
  return body;
}

function dateRange(v) {
  if (v.range === 'custom' && v.from && v.to) return [v.from, v.to];
  if (v.range === 'yesterday') {
    // Yesterday in the site's time zone, as the API reads dates.
    const d = new Intl.DateTimeFormat('en-CA', { timeZone: state.site.timezone }).format(new Date(Date.now() - 864e5));
    return [d, d];
  }
  return RANGES[v.range] || '30d';
}

function query(body) {
  const v = view();
  return api('/api/query', { method: 'POST', body: JSON.stringify({
    site_id: state.site.id, date_range: dateRange(v), filters: v.filters, ...body }) });
}

// -- rendering ----------------------------------------------------------------------------------

const SECTIONS = ['sign-in', 'new-site', 'dashboard', 'settings'];
function show(id) {
  for (const s of SECTIONS) $(s).hidden = s !== id;
  $('nav').hidden = id === 'sign-in';
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') node.textContent = v; else if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function duration(seconds) {
  const m = Math.floor(seconds / 60);
  return m ? `${m}m ${seconds % 60}s` : `${seconds}s`;
}

function kept(site) {
  const tier = state.tiers.find((t) => t.tier === site.tier);
  const fields = new Set(tier ? tier.fields : []);
  if (site.allowed_fields) for (const f of fields) if (!site.allowed_fields.includes(f)) fields.delete(f);
  ['name', 'pathname', 'hostname'].forEach((f) => fields.add(f));
  return fields;
}

function error(id, err) {
  $(id).textContent = err ? err.message || String(err) : '';
  $(id).hidden = !err;
}

async function render() {
  clearInterval(state.realtimeTimer);
  if (!sessionStorage.getItem(KEY)) return show('sign-in');
  try {
    if (!state.tiers.length) state.tiers = await api('/api/tiers');
    state.sites = await api('/api/sites');
  } catch (err) { return error('sign-in-error', err); }
  const v = view();
  if (v.page === 'new' || !state.sites.length) return renderNewSite();
  state.site = state.sites.find((s) => s.id === v.site) || state.sites[0];
  if (state.site.id !== v.site) return go({ site: state.site.id }, true);
  $('site-switcher').replaceChildren(...state.sites.map((s) =>
    el('option', { value: s.id, text: s.name })));
  $('site-switcher').value = state.site.id;
  if (v.page === 'settings') return renderSettings();
  return renderDashboard(v);
}

async function renderDashboard(v) {
  show('dashboard');
  error('dashboard-error', null);
  for (const b of document.querySelectorAll('[data-range]')) b.classList.toggle('active', b.dataset.range === v.range);
  if (v.range === 'custom') { $('from').value = v.from; $('to').value = v.to; }
  renderChips(v);
  $('top-stats').setAttribute('aria-busy', 'true');
  try {
    const range = dateRange(v);
    const oneDay = v.range === 'day' || v.range === 'yesterday' || (Array.isArray(range) && range[0] === range[1]);
    const [top, series] = await Promise.all([
      query({ metrics: TOP_STATS.map((s) => s[0]), include: { comparisons: { mode: 'previous_period' } } }),
      query({ metrics: ['visitors', 'pageviews'], dimensions: [oneDay ? 'time:hour' : 'time:day'],
        include: { time_labels: true } }),
    ]);
    renderTopStats(top.results[0]);
    renderGraph(series);
    const empty = top.results[0].metrics[2] === 0 && !v.filters.length;
    $('empty').hidden = !empty;
    if (empty) $('empty-snippet').textContent = (await api(`/api/sites/${state.site.id}/snippet`)).snippet;
    await renderCards();
  } catch (err) { error('dashboard-error', err); }
  $('top-stats').setAttribute('aria-busy', 'false');
  refreshRealtime();
  state.realtimeTimer = setInterval(refreshRealtime, 30000);
}

async function refreshRealtime() {
  try {
    const now = await api(`/api/realtime?site_id=${state.site.id}`);
    $('realtime').textContent = `${now.visitors} current visitor${now.visitors === 1 ? '' : 's'}`;
  } catch (err) { $('realtime').textContent = ''; }
}

function renderChips(v) {
  $('chips').replaceChildren(...v.filters.map((f, i) => {
    const remove = el('button', { type: 'button', class: 'link', 'aria-label': `Remove filter ${f[1]}`, text: '×' });
    remove.addEventListener('click', () => go({ filters: v.filters.filter((_, j) => j !== i) }));
    return el('span', { class: 'chip', 'data-filter': f[1] }, `${label(f[1])} is ${f[2].join(' or ')} `, remove);
  }));
}

function label(dimension) {
  for (const [, tabs] of CARDS) for (const [name, dim] of tabs) if (dim === dimension) return name.replace(/s$/, '');
  return dimension;
}

function renderTopStats(row) {
  $('top-stats').replaceChildren(...TOP_STATS.map(([metric, name, format], i) => {
    const value = row.metrics[i];
    const change = row.comparison ? row.comparison.change[i] : null;
    const better = metric === 'bounce_rate' ? change < 0 : change > 0;
    const changeText = change === null ? '' : `${change > 0 ? '↑' : change < 0 ? '↓' : ''} ${Math.abs(change)}${metric === 'bounce_rate' ? ' pts' : '%'}`;
    return el('div', { class: 'stat', 'data-metric': metric },
      el('div', { class: 'stat-name', text: name }),
      el('div', { class: 'stat-value', text: format(value) }),
      el('div', { class: `stat-change ${change ? (better ? 'up' : 'down') : ''}`, text: changeText }));
  }));
}

function renderGraph(series) {
  const svg = $('graph');
  const labels = series.meta.time_labels;
  const byLabel = new Map(series.results.map((r) => [r.dimensions[0], r.metrics]));
  const points = labels.map((l) => [l, ...(byLabel.get(l) || [0, 0])]);
  const width = 800; const height = 220; const pad = 28;
  const max = Math.max(1, ...points.map((p) => Math.max(p[1], p[2])));
  const x = (i) => pad + (i * (width - 2 * pad)) / Math.max(1, points.length - 1);
  const y = (value) => height - pad - (value * (height - 2 * pad)) / max;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const ns = 'http://www.w3.org/2000/svg';
  const line = (index, cls) => {
    const path = document.createElementNS(ns, 'polyline');
    path.setAttribute('points', points.map((p, i) => `${x(i)},${y(p[index])}`).join(' '));
    path.setAttribute('class', cls);
    return path;
  };
  const axis = document.createElementNS(ns, 'text');
  axis.setAttribute('x', 2); axis.setAttribute('y', 14); axis.setAttribute('class', 'axis');
  axis.textContent = max.toLocaleString();
  const hover = document.createElementNS(ns, 'g');
  points.forEach((p, i) => {
    const hit = document.createElementNS(ns, 'rect');
    const w = (width - 2 * pad) / Math.max(1, points.length);
    hit.setAttribute('x', x(i) - w / 2); hit.setAttribute('y', 0);
    hit.setAttribute('width', w); hit.setAttribute('height', height);
    hit.setAttribute('class', 'hit'); hit.setAttribute('data-label', p[0]);
    hit.addEventListener('mouseenter', () => {
      const tip = $('tooltip');
      tip.textContent = `${p[0]} — ${p[1]} visitors, ${p[2]} pageviews`;
      tip.hidden = false;
    });
    hit.addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
    hover.append(hit);
  });
  svg.replaceChildren(line(2, 'pageviews'), line(1, 'visitors'), axis, hover);
  svg.dataset.points = String(points.length);
}

async function renderCards() {
  const fields = kept(state.site);
  const cards = [];
  for (const [title, tabs] of CARDS) {
    const visible = tabs.filter((t) => fields.has(t[2]));
    if (!visible.length) continue;
    const current = visible.find((t) => t[1] === state.tab[title]) || visible[0];
    const tabBar = el('div', { class: 'tabs', role: 'tablist' }, ...visible.map((t) => {
      const b = el('button', { type: 'button', role: 'tab', 'data-dimension': t[1], text: t[0],
        class: t === current ? 'active' : '' });
      b.addEventListener('click', () => { state.tab[title] = t[1]; renderCards(); });
      return b;
    }));
    const list = el('ol', { class: 'rows', 'data-dimension': current[1] });
    cards.push(el('div', { class: 'panel card', 'data-card': title }, el('h2', { text: title }), tabBar, list));
    const fill = current[1] === 'props' ? fillProps(list) : fillCard(list, current[1], title === 'Events');
    fill.catch((err) => list.replaceChildren(
      el('li', { class: 'error', text: err.message })));
  }
  $('cards').replaceChildren(...cards);
}

async function fillCard(list, dimension, events) {
  list.replaceChildren(el('li', { class: 'muted', text: 'Loading…' }));
  const filters = events ? [...view().filters, ['is_not', 'event:name', ['pageview']]] : view().filters;
  const metric = events ? 'events' : 'visitors'; // top pages too: visitors, as Plausible counts them
  const answer = await api('/api/query', { method: 'POST', body: JSON.stringify({
    site_id: state.site.id, date_range: dateRange(view()), filters, metrics: [metric],
    dimensions: [dimension], pagination: { limit: 9 } }) });
  const rows = answer.results.filter((r) => r.dimensions[0] !== null || dimension !== 'visit:source');
  if (!rows.length) return list.replaceChildren(el('li', { class: 'muted', text: 'Nothing in this range.' }));
  const max = Math.max(...rows.map((r) => r.metrics[0]));
  list.replaceChildren(...rows.map((r) => {
    const value = r.dimensions[0];
    const bar = el('span', { class: 'share' });
    bar.style.width = `${(100 * r.metrics[0]) / max}%`;
    const item = el('li', { class: 'row', tabindex: '0', 'data-value': value === null ? '' : value },
      bar, el('span', { class: 'name', text: value === null ? '(none)' : value }),
      el('span', { class: 'count', text: r.metrics[0].toLocaleString() }));
    if (value !== null) {
      const apply = () => go({ filters: [...view().filters.filter((f) => f[1] !== dimension), ['is', dimension, [value]]] });
      item.addEventListener('click', apply);
      item.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
    }
    return item;
  }));
}

// Custom properties: the keys seen (of the filtered event, if one is), each with its top values.
async function fillProps(list) {
  list.replaceChildren(el('li', { class: 'muted', text: 'Loading…' }));
  const v = view();
  const named = v.filters.find((f) => f[0] === 'is' && f[1] === 'event:name');
  const range = typeof dateRange(v) === 'string' ? dateRange(v) : '30d';
  const params = new URLSearchParams({ site_id: state.site.id, date_range: range });
  if (named) params.set('event', named[2][0]);
  const { keys } = await api(`/api/props?${params}`);
  if (!keys.length) return list.replaceChildren(el('li', { class: 'muted', text: 'No custom properties in this range.' }));
  const items = [];
  for (const key of keys.slice(0, 6)) {
    const dimension = `event:props:${key}`;
    const answer = await api('/api/query', { method: 'POST', body: JSON.stringify({
      site_id: state.site.id, date_range: dateRange(v), filters: v.filters, metrics: ['events'],
      dimensions: [dimension], pagination: { limit: 5 } }) });
    for (const r of answer.results) {
      if (r.dimensions[0] === null) continue;
      const item = el('li', { class: 'row', tabindex: '0', 'data-value': `${key}=${r.dimensions[0]}` },
        el('span', { class: 'name', text: `${key}: ${r.dimensions[0]}` }),
        el('span', { class: 'count', text: r.metrics[0].toLocaleString() }));
      item.addEventListener('click', () => go({ filters: [...v.filters.filter((f) => f[1] !== dimension),
        ['is', dimension, [r.dimensions[0]]]] }));
      items.push(item);
    }
  }
  list.replaceChildren(...items);
}

// -- signing in with the hosted login (authorization code with PKCE) -------------------------

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

async function startLogin(config) {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const stateToken = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('topup_pkce', JSON.stringify({ verifier, state: stateToken, back: location.search }));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const params = new URLSearchParams({ response_type: 'code', client_id: config.client_id,
    redirect_uri: `${location.origin}/`, scope: 'openid email', state: stateToken,
    code_challenge: challenge, code_challenge_method: 'S256' });
  location.assign(`${config.authorize_url}?${params}`);
}

async function finishLogin(config, params) {
  const saved = JSON.parse(sessionStorage.getItem('topup_pkce') || '{}');
  sessionStorage.removeItem('topup_pkce');
  if (!saved.state || saved.state !== params.get('state')) throw new Error('The sign-in did not complete: please try again.');
  const response = await fetch(config.token_url, { method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: config.client_id,
      code: params.get('code'), redirect_uri: `${location.origin}/`, code_verifier: saved.verifier }) });
  if (!response.ok) throw new Error('The sign-in was refused: please try again.');
  const tokens = await response.json();
  sessionStorage.setItem(KEY, tokens.id_token);
  history.replaceState(null, '', `/${saved.back || ''}`);
}

async function signInOptions() {
  const config = await (await fetch('/api/auth/config')).json();
  const params = new URLSearchParams(location.search);
  if (config.authorize_url && params.get('code')) {
    try { await finishLogin(config, params); } catch (err) { error('sign-in-error', err); history.replaceState(null, '', '/'); }
  }
  if (config.authorize_url) {
    $('oidc-sign-in').hidden = false;
    $('oidc-sign-in').addEventListener('click', () => startLogin(config));
  }
}

// -- settings -----------------------------------------------------------------------------------

async function renderSettings() {
  show('settings');
  error('settings-error', null);
  const site = state.site;
  const form = $('settings-form');
  form.name.value = site.name;
  form.domains.value = site.domains.join(', ');
  form.timezone.value = site.timezone;
  $('tier-choices').replaceChildren(...state.tiers.map((t) => el('label', { class: 'tier' },
    Object.assign(el('input', { type: 'radio', name: 'tier', value: t.tier }), { checked: t.tier === site.tier }),
    el('strong', { text: t.title }), el('span', { class: 'muted', text: ` ${t.collects}` }),
    el('span', { class: 'advice', text: ` ${t.tell_visitors}` }))));
  renderFieldChoices(site.tier, site.allowed_fields);
  for (const radio of form.querySelectorAll('input[name=tier]')) {
    radio.addEventListener('change', () => renderFieldChoices(radio.value, null));
  }
  try {
    $('settings-snippet').textContent = (await api(`/api/sites/${site.id}/snippet`)).snippet;
    const usage = await api(`/api/sites/${site.id}/usage?days=30`);
    $('usage').replaceChildren(el('p', { text:
      `${usage.accepted.toLocaleString()} events accepted and ${usage.dropped.toLocaleString()} dropped in the last 30 days; ` +
      `${usage.allowance_remaining.toLocaleString()} events of allowance left.` +
      (usage.allowance_remaining < 10000 ? ' Top up soon: events beyond the allowance are dropped.' : '') }));
    await renderKeys();
  } catch (err) { error('settings-error', err); }
}

function renderFieldChoices(tierName, allowed) {
  const tier = state.tiers.find((t) => t.tier === tierName);
  // What an event is (its name, page, host) is always kept; the rest can be narrowed.
  const optional = tier.fields.filter((f) => !['name', 'pathname', 'hostname'].includes(f));
  $('field-choices').replaceChildren(...optional.map((f) => el('label', {},
    Object.assign(el('input', { type: 'checkbox', name: 'field', value: f }), { checked: !allowed || allowed.includes(f) }),
    ` ${f}`)));
}

async function renderKeys() {
  const keys = await api('/api/keys');
  $('keys').replaceChildren(...keys.map((k) => {
    const revoke = el('button', { type: 'button', class: 'link', text: 'Revoke' });
    revoke.addEventListener('click', async () => { await api(`/api/keys/${k.id}`, { method: 'DELETE' }); renderKeys(); });
    return el('li', {}, `${k.name} (${k.prefix}…) `, k.revoked_at ? el('span', { class: 'muted', text: 'revoked' }) : revoke);
  }));
}

async function saveSettings(event) {
  event.preventDefault();
  const form = event.target;
  const fields = [...form.querySelectorAll('input[name=field]')];
  const chosen = fields.filter((f) => f.checked).map((f) => f.value);
  const body = {
    name: form.name.value, timezone: form.timezone.value,
    domains: form.domains.value.split(',').map((d) => d.trim()).filter(Boolean),
    tier: form.querySelector('input[name=tier]:checked').value,
    allowed_fields: chosen.length === fields.length ? null : chosen,
  };
  try {
    await api(`/api/sites/${state.site.id}`, { method: 'PATCH', body: JSON.stringify(body) });
    error('settings-error', null);
    $('settings-saved').hidden = false;
    setTimeout(() => { $('settings-saved').hidden = true; }, 2000);
    await render();
  } catch (err) { error('settings-error', err); }
}

// -- adding a site -----------------------------------------------------------------------------

function renderNewSite() {
  show('new-site');
  $('new-site-done').hidden = true;
  $('new-site-form').hidden = false;
  $('new-site-tier').replaceChildren(...state.tiers.map((t) => el('option', { value: t.tier, text: t.title })));
  $('new-site-timezone').value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

async function createSite(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const site = await api('/api/sites', { method: 'POST', body: JSON.stringify({
      name: form.name.value, domains: [form.domain.value], tier: form.tier.value, timezone: form.timezone.value }) });
    $('new-site-snippet').textContent = (await api(`/api/sites/${site.id}/snippet`)).snippet;
    $('new-site-form').hidden = true;
    $('new-site-done').hidden = false;
    $('new-site-open').href = `?site=${site.id}`;
    error('new-site-error', null);
  } catch (err) { error('new-site-error', err); }
}

// -- wiring -------------------------------------------------------------------------------------

async function exportCsv() {
  const v = view();
  const response = await fetch('/api/export', { method: 'POST', headers: {
    Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, 'Content-Type': 'application/json' },
  body: JSON.stringify({ site_id: state.site.id, date_range: dateRange(v), filters: v.filters,
    metrics: ['visitors', 'pageviews', 'bounce_rate', 'visit_duration'], dimensions: ['event:page'] }) });
  const link = el('a', { href: URL.createObjectURL(await response.blob()), download: `topup-${state.site.name}.csv` });
  link.click();
}

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $('api-key').value.trim());
    error('sign-in-error', null);
    render();
  });
  $('sign-out').addEventListener('click', () => { sessionStorage.removeItem(KEY); render(); });
  $('site-switcher').addEventListener('change', (e) => go({ site: e.target.value, filters: [], page: 'dashboard' }));
  $('add-site').addEventListener('click', () => go({ page: 'new' }));
  $('new-site-open').addEventListener('click', (e) => { e.preventDefault(); location.href = e.target.href; });
  $('settings-link').addEventListener('click', (e) => { e.preventDefault(); go({ page: 'settings' }); });
  $('new-site-form').addEventListener('submit', createSite);
  $('settings-form').addEventListener('submit', saveSettings);
  $('new-key-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const created = await api('/api/keys', { method: 'POST', body: JSON.stringify({ name: e.target.name.value }) });
    $('new-key').textContent = `${created.key}\nStore it now: it is not shown again.`;
    $('new-key').hidden = false;
    renderKeys();
  });
  for (const b of document.querySelectorAll('[data-range]')) b.addEventListener('click', () => go({ range: b.dataset.range }));
  $('apply-custom').addEventListener('click', () => {
    if ($('from').value && $('to').value) go({ range: 'custom', from: $('from').value, to: $('to').value });
  });
  $('export').addEventListener('click', exportCsv);
  for (const b of document.querySelectorAll('.copy')) {
    b.addEventListener('click', () => navigator.clipboard.writeText($(b.dataset.copy).textContent)
      .then(() => { b.textContent = 'Copied'; }, () => { b.textContent = 'Select and copy'; }));
  }
  window.addEventListener('popstate', render);
  signInOptions().finally(render);
});
