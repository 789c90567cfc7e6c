// Gantry dashboard: draws each page from the controller's API. Every page
// is a real URL the server answers with the same HTML; links are plain
// links. Changes carry the session's CSRF token (see GET /session).
'use strict';

const CSRF_HEADER = 'Gantry-CSRF-Token';
// session.ready resolves once GET /session gave the CSRF token.
const session = { csrf: '', ready: null };

class APIError extends Error {
  constructor(status, code, message) {
    super(message || code || ('HTTP ' + status));
    this.status = status;
    this.code = code;
  }
}

// h makes an element: attrs are set as attributes (on* as listeners), and
// strings among the children become text, never HTML.
function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function replace(el, ...children) {
  el.textContent = '';
  append(el, children);
}

// api calls the controller with the session cookie; it returns the parsed
// body and the headers, and throws an APIError for an error answer.
async function api(method, path, body) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD') {
    await session.ready;
    headers[CSRF_HEADER] = session.csrf;
  }
  const opts = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    if (resp.status === 401 && path !== '/session') toLogin(session.csrf ? 'Your session ended; sign in again.' : '');
    throw new APIError(resp.status, err.code, err.message);
  }
  return { data, headers: resp.headers };
}

function toLogin(reason) {
  const next = location.pathname === '/login' ? '/' : location.pathname;
  const q = new URLSearchParams({ next });
  if (reason) q.set('reason', reason);
  location.replace('/login?' + q.toString());
}

// ---- formatting ----

function ago(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return s + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 86400) return Math.floor(s / 3600) + 'h ago';
  return Math.floor(s / 86400) + 'd ago';
}

function bytes(n) {
  if (n === undefined || n === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

function num(v, digits) {
  if (!isFinite(v)) return '';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(digits === undefined ? 2 : digits);
}

function seconds(v) {
  if (!isFinite(v)) return '';
  return v < 1 ? num(v * 1000) + ' ms' : num(v) + ' s';
}

function stateBadge(state, text) {
  return h('span', { class: 'state ' + state }, text || state.replace('_', ' '));
}

function message(el, text, kind) {
  el.className = 'msg' + (kind ? ' ' + kind : '');
  el.textContent = text;
}

// deployStatus is the line the CLI shows for a deployment.
function deployStatus(d) {
  const progress = (d.processes || []).filter(p => p.want > 0)
    .map(p => p.type + ' ' + Math.min(p.up, p.want) + '/' + p.want).join(', ') || 'no process is scaled up';
  switch (d.state) {
    case 'pending': return 'v' + d.new_release + ' waits for the running deployment to end';
    case 'running': return 'Deploying v' + d.new_release + ' (' + d.strategy + '): ' + progress;
    case 'rolling_back': return 'Deploy of v' + d.new_release + ' failed, rolling back to v' + d.old_release + ': ' + d.reason;
    case 'complete': return 'Deployed v' + d.new_release;
    case 'rolled_back': return 'Deploy of v' + d.new_release + ' failed: ' + d.reason + '; v' + d.old_release + ' keeps running';
    case 'failed': return 'Deploy of v' + d.new_release + ' failed: ' + d.reason;
    case 'superseded': return 'Deploy of v' + d.new_release + ' was replaced by a newer release before it started';
  }
  return 'Deploy of v' + d.new_release + ' is ' + d.state;
}

function ended(d) {
  return ['complete', 'failed', 'rolled_back', 'superseded'].includes(d.state);
}

// ---- pages ----

const main = () => document.getElementById('main');

function setTitle(text) {
  document.title = text + ' · Gantry';
}

async function start() {
  const path = location.pathname;
  if (path === '/login') {
    loginPage();
    return;
  }
  // The session and the page's first data are asked for at once: a
  // signed-out browser gets 401 from both and goes to the login page.
  session.ready = api('GET', '/session').then(({ data }) => {
    session.csrf = data.csrf_token;
    document.getElementById('nav').hidden = false;
  }, e => {
    if (e.status === 401) toLogin();
    else replace(main(), h('p', { class: 'msg error', role: 'alert' }, 'The controller did not answer: ' + e.message));
    throw e;
  });
  session.ready.catch(() => {});
  document.getElementById('signout').addEventListener('click', signOut);
  const m = path.match(/^\/apps\/([a-z][a-z0-9-]*)$/);
  if (m) appPage(m[1]);
  else if (path === '/hosts') hostsPage();
  else appsPage();
}

async function signOut() {
  try { await api('DELETE', '/session'); } catch (e) { /* signed out either way */ }
  location.replace('/login');
}

function loginPage() {
  setTitle('Sign in');
  const params = new URLSearchParams(location.search);
  const msg = h('p', { class: 'msg', role: 'alert', id: 'login-msg' });
  if (params.get('reason')) message(msg, params.get('reason'), 'error');
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const form = h('form', { id: 'login', onsubmit: async ev => {
    ev.preventDefault();
    message(msg, 'Signing in…');
    try {
      const resp = await fetch('/session', { method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: input.value }) });
      if (!resp.ok) {
        const body = await resp.json().catch(() => ({}));
        message(msg, (body.error && body.error.message) || 'Sign-in failed', 'error');
        input.focus();
        return;
      }
      const next = params.get('next') || '/';
      location.replace(next.startsWith('/') && !next.startsWith('//') ? next : '/');
    } catch (e) {
      message(msg, 'The controller did not answer: ' + e.message, 'error');
    }
  } },
  h('label', { for: 'token' }, 'API token'),
  input,
  h('p', { class: 'muted' }, 'The GANTRY_TOKEN of admin.env, or another API token. It is checked once; the browser keeps only a session cookie.'),
  h('button', { type: 'submit' }, 'Sign in'),
  msg);
  replace(main(), h('section', { class: 'login card' }, h('h1', {}, 'Sign in to Gantry'), form));
  input.focus();
}

// ---- apps ----

async function appsPage() {
  setTitle('Apps');
  const root = main();
  let apps;
  try {
    apps = (await api('GET', '/v1/apps')).data;
  } catch (e) {
    replace(root, h('p', { class: 'msg error', role: 'alert' }, 'Cannot list the apps: ' + e.message));
    return;
  }
  const filter = h('input', { type: 'search', id: 'filter', placeholder: 'Filter by name', 'aria-label': 'Filter apps by name' });
  const tbody = h('tbody');
  const rows = apps.map(app => {
    const state = h('td', { class: 'app-state' }, h('span', { class: 'muted' }, '…'));
    const rate = h('td', { class: 'num app-rate' }, h('span', { class: 'muted' }, '…'));
    const tr = h('tr', { 'data-app': app.name },
      h('td', {}, h('a', { href: '/apps/' + app.name }, app.name)),
      state,
      h('td', { class: 'num' }, app.release ? 'v' + app.release : h('span', { class: 'muted' }, 'none')),
      rate,
      h('td', { class: 'hide-narrow' }, app.web_url && app.release ? h('a', { href: app.web_url, rel: 'noopener' }, app.web_url) : ''));
    tr.gantry = { app, state, rate, loaded: false };
    return tr;
  });
  append(tbody, rows);
  filter.addEventListener('input', () => {
    const q = filter.value.trim().toLowerCase();
    for (const tr of rows) tr.hidden = q !== '' && !tr.gantry.app.name.includes(q);
  });
  replace(root,
    h('div', { class: 'cardhead' }, h('h1', {}, 'Apps ', h('span', { class: 'muted', id: 'app-count' }, '(' + apps.length + ')')), filter),
    apps.length === 0
      ? h('p', { class: 'card' }, 'No apps yet. Create one with ', h('code', {}, 'gantry create NAME'), '.')
      : h('div', { class: 'card scroll' }, h('table', { id: 'apps' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'App'), h('th', { scope: 'col' }, 'State'),
          h('th', { scope: 'col', class: 'num' }, 'Release'), h('th', { scope: 'col', class: 'num' }, 'Requests/s'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Web URL'))),
        tbody)));
  // The list is usable now; the tests read when that was.
  document.body.dataset.appsRenderedMs = String(Math.round(performance.now()));
  // Each row's state and request rate cost two requests: only the rows
  // on screen ask, a few at a time.
  const queue = [];
  let running = 0;
  const pump = () => {
    while (running < 4 && queue.length) {
      const tr = queue.shift();
      running++;
      loadAppRow(tr.gantry).finally(() => { running--; pump(); });
    }
  };
  const observer = new IntersectionObserver(entries => {
    for (const e of entries) {
      if (e.isIntersecting && !e.target.gantry.loaded) {
        e.target.gantry.loaded = true;
        observer.unobserve(e.target);
        queue.push(e.target);
      }
    }
    pump();
  });
  rows.forEach(tr => observer.observe(tr));
}

// hostsPage lists the hosts with their CPU, memory, disks and jobs, as
// GET /v1/hosts reports them, and reloads every 10 s (the agents' reading
// interval).
async function hostsPage() {
  setTitle('Hosts');
  const root = main();
  let hosts;
  try {
    hosts = (await api('GET', '/v1/hosts')).data;
  } catch (e) {
    replace(root, h('p', { class: 'msg error', role: 'alert' }, 'Cannot list the hosts: ' + e.message));
    return;
  }
  const pct = (used, total) => total ? ' (' + Math.round(100 * used / total) + '%)' : '';
  const rows = hosts.map(host => {
    const u = host.usage;
    const disks = u && u.disks && u.disks.length
      ? u.disks.map(d => h('div', { class: d.total && d.used / d.total >= 0.85 ? 'warn' : '' },
        bytes(d.used) + ' / ' + bytes(d.total) + pct(d.used, d.total) + ' ', h('span', { class: 'muted' }, d.path)))
      : h('span', { class: 'muted' }, 'not reported');
    return h('tr', { 'data-host': host.id },
      h('td', {}, host.id, h('div', { class: 'muted' }, [host.addr, host.etcd_member ? 'etcd member' : ''].filter(Boolean).join(' · '))),
      h('td', { class: 'host-state' }, hostState(host)),
      h('td', { class: 'num' }, u ? num(u.cpu) + ' / ' + u.cores + ' cores' : ''),
      h('td', { class: 'num' }, u ? bytes(u.memory_used) + ' / ' + bytes(u.memory_total) + pct(u.memory_used, u.memory_total) : ''),
      h('td', {}, disks),
      h('td', { class: 'num' }, host.jobs === undefined ? '' : String(host.jobs)));
  });
  replace(root,
    h('div', { class: 'cardhead' }, h('h1', {}, 'Hosts ', h('span', { class: 'muted' }, '(' + hosts.length + ')'))),
    h('div', { class: 'card scroll' }, h('table', { id: 'hosts' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Host'), h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col', class: 'num' }, 'CPU'), h('th', { scope: 'col', class: 'num' }, 'Memory'),
        h('th', { scope: 'col' }, 'Disks'), h('th', { scope: 'col', class: 'num' }, 'Jobs'))),
      h('tbody', {}, rows))));
  setTimeout(() => { if (location.pathname === '/hosts') hostsPage(); }, 10000);
}

// hostState is a host's state as `gantry hosts` shows it (up, unhealthy
// with its reason, draining, drained, down); a controller that does not
// report states says only whether the host is healthy.
function hostState(host) {
  const state = host.state || (host.healthy ? 'up' : 'unhealthy');
  return stateBadge(state, state === 'unhealthy' && host.reason ? 'unhealthy: ' + host.reason : state);
}

// appState sums up an app's jobs.
function appState(app, jobs) {
  if (!app.release) return stateBadge('pending', 'no release');
  const count = s => jobs.filter(j => j.state === s && !j.one_off).length;
  const up = count('up'), crashed = count('crashed'), starting = count('starting') + count('pending');
  if (crashed) return stateBadge('crashed', crashed + ' crashed' + (up ? ', ' + up + ' up' : ''));
  if (starting) return stateBadge('starting', starting + ' starting' + (up ? ', ' + up + ' up' : ''));
  if (up) return stateBadge('up', up + ' up');
  return stateBadge('down', 'no process running');
}

async function loadAppRow(row) {
  const [jobs, metrics] = await Promise.allSettled([
    api('GET', '/v1/apps/' + row.app.name + '/jobs'),
    api('GET', '/v1/apps/' + row.app.name + '/metrics?since=1h'),
  ]);
  replace(row.state, jobs.status === 'fulfilled' ? appState(row.app, jobs.value.data)
    : h('span', { class: 'muted', title: jobs.reason.message }, 'unknown'));
  const rate = metrics.status === 'fulfilled' ? latest(metrics.value.data, 'requests_per_second', '') : null;
  replace(row.rate, rate === null ? h('span', { class: 'muted', title: 'no metrics yet' }, '—') : num(rate));
}

// latest is the last value of a series of a metrics answer, or null.
function latest(m, name, type) {
  const s = (m.series || []).find(s => s.name === name && (s.type || '') === type);
  if (!s || !s.points || !s.points.length) return null;
  return s.points[s.points.length - 1].v;
}

// ---- one app ----

function card(id, title, ...children) {
  return h('section', { class: 'card', id, 'aria-labelledby': id + '-h' }, h('h2', { id: id + '-h' }, title), ...children);
}

async function appPage(name) {
  setTitle(name);
  const root = main();
  let app;
  try {
    app = (await api('GET', '/v1/apps/' + name)).data;
  } catch (e) {
    replace(root, h('h1', {}, name), h('p', { class: 'msg error', role: 'alert' },
      e.status === 404 ? 'There is no app named ' + name + '.' : 'Cannot read the app: ' + e.message),
    h('p', {}, h('a', { href: '/' }, 'All apps')));
    return;
  }
  const meta = h('div', { class: 'meta', id: 'app-meta' });
  const page = {
    app,
    meta,
    processes: h('div', { id: 'processes-body' }),
    charts: h('div', { id: 'charts-body' }),
    deploys: h('div', { id: 'deploys-body' }),
    releases: h('div', { id: 'releases-body' }),
    config: h('div', { id: 'config-body' }),
    domains: h('div', { id: 'domains-body' }),
    log: h('div', { class: 'log', id: 'log', role: 'log', 'aria-live': 'off', tabindex: '0', 'aria-label': 'Log of ' + name }),
    followed: new Map(),
  };
  replace(root,
    h('p', {}, h('a', { href: '/' }, '← All apps')),
    h('h1', {}, name),
    meta,
    h('div', { class: 'grid' },
      card('processes', 'Processes', page.processes),
      card('deployments', 'Deployments', page.deploys),
      h('section', { class: 'card wide', id: 'metrics', 'aria-labelledby': 'metrics-h' },
        h('div', { class: 'cardhead' }, h('h2', { id: 'metrics-h' }, 'Metrics'), rangeButtons(page)), page.charts),
      card('releases', 'Releases', page.releases),
      card('config', 'Config vars', page.config),
      card('domains', 'Domains', page.domains),
      h('section', { class: 'card wide', id: 'logs', 'aria-labelledby': 'logs-h' },
        h('h2', { id: 'logs-h' }, 'Log'), page.log)));
  drawMeta(page);
  loadProcesses(page);
  loadDeployments(page);
  loadMetrics(page, '1h');
  loadReleases(page);
  loadConfig(page);
  loadDomains(page);
  followLog(page, '');
  // A tab in the background asks for nothing until it is shown again.
  const every = (ms, f) => setInterval(() => { if (!document.hidden) f(); }, ms);
  every(5000, () => loadProcesses(page));
  every(5000, () => loadDeployments(page));
  every(30000, () => loadMetrics(page, page.since));
}

function drawMeta(page) {
  const app = page.app;
  const urls = app.urls && app.urls.length ? app.urls : (app.web_url ? [app.web_url] : []);
  replace(page.meta,
    h('span', { id: 'current-release' }, app.release ? 'Release v' + app.release : 'No release yet'),
    urls.map(u => h('a', { href: u, rel: 'noopener' }, u)),
    app.git_url ? h('code', { title: 'git remote' }, app.git_url) : '');
}

async function refreshApp(page) {
  try {
    page.app = (await api('GET', '/v1/apps/' + page.app.name)).data;
    drawMeta(page);
  } catch (e) { /* the next refresh tries again */ }
}

// ---- processes and scale ----

async function loadProcesses(page) {
  const name = page.app.name;
  const [jobs, formation] = await Promise.allSettled([
    api('GET', '/v1/apps/' + name + '/jobs'),
    page.formationDrawn ? Promise.resolve(null) : api('GET', '/v1/apps/' + name + '/formation'),
  ]);
  if (!page.jobsTable) {
    page.jobsTable = h('div', { class: 'scroll' });
    page.scaleBox = h('div');
    replace(page.processes, page.jobsTable, page.scaleBox);
  }
  if (jobs.status === 'fulfilled') drawJobs(page, jobs.value.data);
  else replace(page.jobsTable, h('p', { class: 'msg error' }, 'Cannot list the jobs: ' + jobs.reason.message));
  if (formation.status === 'fulfilled' && formation.value) {
    drawScale(page, formation.value.data);
  } else if (formation.status === 'rejected') {
    replace(page.scaleBox, h('p', { class: 'muted' }, formation.reason.code === 'no_release'
      ? 'No release yet: deploy one with git push, then scale it here.' : 'Cannot read the formation: ' + formation.reason.message));
  }
}

function drawJobs(page, jobs) {
  jobs = jobs.filter(j => j.state !== 'down');
  if (!jobs.length) {
    replace(page.jobsTable, h('p', { class: 'muted' }, 'No process runs.'));
    return;
  }
  const rows = jobs.map(j => {
    const u = j.usage;
    const mem = u ? bytes(u.memory_rss + u.memory_cache) + (u.memory_limit ? ' / ' + bytes(u.memory_limit) : '') : '';
    return h('tr', { 'data-job': j.id },
      h('td', {}, j.type + '.' + j.index),
      h('td', {}, stateBadge(j.state), j.state === 'crashed' && j.exit_code !== undefined ? h('span', { class: 'muted' }, ' exit ' + j.exit_code) : ''),
      h('td', { class: 'num' }, 'v' + j.release),
      h('td', { class: 'num job-cpu' }, u ? num(u.cpu * 100, 1) + '%' : ''),
      h('td', { class: 'num job-mem', title: u ? 'RSS ' + bytes(u.memory_rss) + ', cache ' + bytes(u.memory_cache) : '' }, mem),
      h('td', { class: 'hide-narrow' }, j.started_at && j.state === 'up' ? ago(j.started_at).replace(' ago', '') : ''));
  });
  replace(page.jobsTable, h('table', { id: 'jobs' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Process'), h('th', { scope: 'col' }, 'State'),
      h('th', { scope: 'col', class: 'num' }, 'Release'), h('th', { scope: 'col', class: 'num' }, 'CPU'),
      h('th', { scope: 'col', class: 'num' }, 'Memory'), h('th', { scope: 'col', class: 'hide-narrow' }, 'Up for'))),
    h('tbody', {}, rows)));
}

function drawScale(page, formation) {
  page.formationDrawn = true;
  const types = Object.keys(formation.processes).sort();
  const msg = h('p', { class: 'msg', role: 'status', id: 'scale-msg' });
  const inputs = types.map(t => h('input', { type: 'number', min: '0', max: '100', step: '1', name: t,
    id: 'scale-' + t, value: String(formation.processes[t]) }));
  const form = h('form', { class: 'scale', id: 'scale', onsubmit: async ev => {
    ev.preventDefault();
    const counts = {};
    for (const input of inputs) counts[input.name] = Number(input.value);
    button.disabled = true;
    message(msg, 'Scaling…');
    try {
      const f = (await api('PUT', '/v1/apps/' + page.app.name + '/formation', counts)).data;
      message(msg, 'Scaled: ' + Object.keys(f.processes).sort().map(t => t + '=' + f.processes[t]).join(' '), 'ok');
      loadProcesses(page);
    } catch (e) {
      message(msg, 'Scale failed: ' + e.message, 'error');
    } finally {
      button.disabled = false;
    }
  } },
  types.map((t, i) => h('label', { for: 'scale-' + t }, t, inputs[i])));
  const button = h('button', { type: 'submit' }, 'Scale');
  form.append(button);
  replace(page.scaleBox, form, msg);
}

// ---- deployments ----

async function loadDeployments(page) {
  let list;
  try {
    list = (await api('GET', '/v1/apps/' + page.app.name + '/deployments')).data;
  } catch (e) {
    replace(page.deploys, h('p', { class: 'msg error' }, 'Cannot list the deployments: ' + e.message));
    return;
  }
  page.deployList = list.slice(0, 5);
  drawDeployments(page);
  const first = !page.ended;
  if (first) page.ended = new Set(list.filter(ended).map(d => d.id));
  for (const d of page.deployList) {
    if (!ended(d) && !page.followed.has(d.id)) followDeployment(page, d.id);
    // One that ran and ended between two looks.
    if (ended(d) && !first) deploymentEnded(page, d.id);
  }
}

function drawDeployments(page) {
  const list = page.deployList || [];
  // An unchanged list is not drawn again, so that screen readers do not
  // read it out every few seconds.
  const drawn = JSON.stringify(list);
  if (drawn === page.deploysDrawn) return;
  page.deploysDrawn = drawn;
  if (!list.length) {
    replace(page.deploys, h('p', { class: 'muted' }, 'No deployment yet.'));
    return;
  }
  replace(page.deploys, h('ul', { class: 'deploys', id: 'deploy-list', 'aria-live': 'polite' }, list.map(d => {
    const live = !ended(d);
    return h('li', { 'data-deployment': d.id, 'data-state': d.state },
      h('div', { class: 'status' }, deployStatus(d)),
      h('div', { class: 'muted' }, stateBadge(d.state), ' ', d.strategy,
        d.old_release ? ' · v' + d.old_release + ' → v' + d.new_release : ' · v' + d.new_release,
        ' · ', ago(d.created_at)),
      live ? h('div', { class: 'progress' }, (d.processes || []).filter(p => p.want > 0).map(p => [
        h('span', {}, p.type),
        h('progress', { max: String(p.want), value: String(Math.min(p.up, p.want)), 'aria-label': p.type + ' jobs up' }),
        h('span', { class: 'mono' }, Math.min(p.up, p.want) + '/' + p.want)])) : '',
      d.last_lines && d.last_lines.length ? h('pre', { class: 'lines' }, d.last_lines.join('\n')) : '');
  })));
}

// followDeployment shows a running deployment's progress as the controller
// streams it (server-sent events), until it ends.
function followDeployment(page, id) {
  const es = new EventSource('/v1/apps/' + page.app.name + '/deployments/' + id + '/events');
  page.followed.set(id, es);
  const update = ev => {
    const d = JSON.parse(ev.data);
    const list = page.deployList || [];
    const i = list.findIndex(x => x.id === d.id);
    if (i >= 0) list[i] = d; else list.unshift(d);
    page.deployList = list.slice(0, 5);
    drawDeployments(page);
    return d;
  };
  es.addEventListener('progress', update);
  es.addEventListener('end', ev => {
    const d = update(ev);
    es.close();
    deploymentEnded(page, d.id);
  });
}

// deploymentEnded draws again what the end of a deployment changes: the
// current release, the releases, the processes (a new release may bring
// other types), the domains and the config vars.
async function deploymentEnded(page, id) {
  page.ended = page.ended || new Set();
  if (page.ended.has(id)) return;
  page.ended.add(id);
  page.formationDrawn = false;
  await refreshApp(page);
  loadReleases(page);
  loadProcesses(page);
  loadDomains(page);
  loadConfig(page);
}

// ---- metrics ----

function rangeButtons(page) {
  const buttons = [['1h', 'Last hour'], ['24h', 'Last day']].map(([since, label]) =>
    h('button', { type: 'button', class: 'secondary', 'data-since': since, 'aria-pressed': since === '1h' ? 'true' : 'false',
      onclick: () => {
        buttons.forEach(b => b.setAttribute('aria-pressed', b.dataset.since === since ? 'true' : 'false'));
        loadMetrics(page, since);
      } }, label));
  return h('div', { class: 'toolbar', role: 'group', 'aria-label': 'Time range' }, buttons);
}

async function loadMetrics(page, since) {
  page.since = since;
  let m;
  try {
    m = (await api('GET', '/v1/apps/' + page.app.name + '/metrics?since=' + since)).data;
  } catch (e) {
    if (page.since !== since) return;
    replace(page.charts, h('div', { class: 'nodata', id: 'metrics-nodata' },
      e.status === 404 ? 'No data yet' : 'No data yet (' + e.message + ')'));
    return;
  }
  if (page.since !== since) return;
  const series = (name) => (m.series || []).filter(s => s.name === name);
  const by = (name, type) => series(name).filter(s => (s.type || '') === type);
  const label = since === '24h' ? 'last day' : 'last hour';
  const perType = name => series(name).filter(s => s.type).map(s => ({ label: s.type, points: s.points || [] }));
  replace(page.charts, h('div', { class: 'charts' },
    chart('Requests per second', label, by('requests_per_second', '').map(s => ({ label: 'req/s', points: s.points || [] })), num),
    chart('5xx errors per second', label, by('errors_5xx_per_second', '').map(s => ({ label: '5xx/s', points: s.points || [] })), num),
    chart('Latency', label, [['latency_p50_seconds', 'p50'], ['latency_p95_seconds', 'p95'], ['latency_p99_seconds', 'p99']]
      .flatMap(([n, l]) => by(n, '').map(s => ({ label: l, points: s.points || [] }))), seconds),
    chart('CPU (cores)', label, perType('cpu_cores'), num),
    chart('Memory', label, perType('memory_bytes'), bytes)));
}

// chart draws series of {t, v} points as lines in an inline SVG.
function chart(title, range, series, fmt) {
  const pts = series.flatMap(s => s.points);
  const caption = h('figcaption', {}, h('span', {}, title), h('span', { class: 'muted' }, range));
  if (!pts.length) {
    return h('figure', { class: 'nodata-chart' }, caption, h('div', { class: 'nodata' }, 'No data yet'));
  }
  const W = 320, H = 120, L = 44, B = 18, T = 6, R = 6;
  const ts = pts.map(p => Date.parse(p.t));
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1000);
  const vmax = Math.max(...pts.map(p => p.v), 0) || 1;
  const x = t => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = v => T + (H - T - B) * (1 - v / vmax);
  const hhmm = t => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const last = series.map(s => s.points.length ? s.label + ' ' + fmt(s.points[s.points.length - 1].v) : '').filter(Boolean).join(', ');
  const svg = h('svg:svg', { class: 'chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': title + ', ' + range + ': latest ' + last },
    h('svg:line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    h('svg:line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    h('svg:text', { x: L - 4, y: T + 10, 'text-anchor': 'end' }, fmt(vmax)),
    h('svg:text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'),
    h('svg:text', { x: L, y: H - 4 }, hhmm(t0)),
    h('svg:text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, hhmm(t1)),
    series.map((s, i) => h('svg:polyline', { class: 's' + (i % 4),
      points: s.points.map(p => x(Date.parse(p.t)).toFixed(1) + ',' + y(p.v).toFixed(1)).join(' ') })));
  return h('figure', {}, caption, svg,
    h('ul', { class: 'legend' }, series.map((s, i) => h('li', { class: 's' + (i % 4) },
      s.label + (s.points.length ? ' ' + fmt(s.points[s.points.length - 1].v) : '')))));
}

// ---- releases and rollback ----

async function loadReleases(page) {
  let list;
  try {
    list = (await api('GET', '/v1/apps/' + page.app.name + '/releases')).data;
  } catch (e) {
    replace(page.releases, h('p', { class: 'msg error' }, 'Cannot list the releases: ' + e.message));
    return;
  }
  if (!list.length) {
    replace(page.releases, h('p', { class: 'muted' }, 'No release yet.'));
    return;
  }
  // The message outlives the list, which a rollback draws again.
  page.rollbackMsg = page.rollbackMsg || h('p', { class: 'msg', role: 'status', id: 'rollback-msg' });
  const msg = page.rollbackMsg;
  const rows = list.slice(0, 10).map(r => {
    const current = r.version === page.app.release;
    const cell = h('td', { class: 'num' });
    const ask = () => replace(cell,
      h('button', { type: 'button', class: 'danger', onclick: () => rollback(page, r.version, msg) }, 'Confirm'),
      ' ', h('button', { type: 'button', class: 'secondary', onclick: () => { replace(cell, offer()); cell.querySelector('button').focus(); } }, 'Cancel'));
    const offer = () => current ? h('span', { class: 'state up' }, 'current')
      : h('button', { type: 'button', class: 'secondary', 'aria-label': 'Roll back to v' + r.version,
        onclick: () => { ask(); cell.querySelector('button').focus(); } }, 'Roll back');
    replace(cell, offer());
    return h('tr', { 'data-release': r.version },
      h('td', {}, 'v' + r.version), h('td', { class: 'hide-narrow when', title: r.created_at }, ago(r.created_at)),
      h('td', {}, r.description), cell);
  });
  replace(page.releases, h('div', { class: 'scroll' }, h('table', { id: 'release-list' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Version'), h('th', { scope: 'col', class: 'hide-narrow' }, 'Made'),
      h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, h('span', { class: 'muted' }, '')))),
    h('tbody', {}, rows))), msg);
}

async function rollback(page, version, msg) {
  message(msg, 'Rolling back to v' + version + '…');
  try {
    const { data, headers } = await api('POST', '/v1/apps/' + page.app.name + '/rollback', { version });
    message(msg, 'Made v' + data.version + ' from v' + version + '; deploying it.', 'ok');
    const id = headers.get('Gantry-Deployment');
    if (id && !page.followed.has(id)) followDeployment(page, id);
    loadReleases(page);
  } catch (e) {
    message(msg, 'Rollback failed: ' + e.message, 'error');
  }
}

// ---- config vars ----

async function loadConfig(page) {
  let cfg;
  try {
    cfg = (await api('GET', '/v1/apps/' + page.app.name + '/config')).data;
  } catch (e) {
    replace(page.config, h('p', { class: 'msg error' }, 'Cannot read the config vars: ' + e.message));
    return;
  }
  const names = Object.keys(cfg).sort();
  if (!names.length) {
    replace(page.config, h('p', { class: 'muted' }, 'No config vars. Set one with ', h('code', {}, 'gantry env set NAME=value'), '.'));
    return;
  }
  // Values stay out of the page until revealed.
  const rows = names.map(n => {
    const value = h('td', { class: 'secret' }, '••••••');
    const button = h('button', { type: 'button', class: 'secondary', 'aria-pressed': 'false', 'aria-label': 'Reveal ' + n,
      onclick: () => {
        const shown = button.getAttribute('aria-pressed') === 'true';
        button.setAttribute('aria-pressed', shown ? 'false' : 'true');
        button.setAttribute('aria-label', (shown ? 'Reveal ' : 'Hide ') + n);
        button.textContent = shown ? 'Reveal' : 'Hide';
        value.textContent = shown ? '••••••' : cfg[n];
      } }, 'Reveal');
    return h('tr', { 'data-var': n }, h('td', { class: 'mono' }, n), value, h('td', { class: 'num' }, button));
  });
  replace(page.config, h('div', { class: 'scroll' }, h('table', { id: 'config-list' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, ''))),
    h('tbody', {}, rows))));
}

// ---- domains ----

async function loadDomains(page) {
  let routes;
  try {
    routes = (await api('GET', '/v1/apps/' + page.app.name + '/routes')).data;
  } catch (e) {
    replace(page.domains, h('p', { class: 'msg error' }, 'Cannot list the domains: ' + e.message));
    return;
  }
  if (!routes.length) {
    replace(page.domains, h('p', { class: 'muted' }, 'No domain: the app has no web process yet.'));
    return;
  }
  const cert = r => {
    if (!r.tls) return h('span', { class: 'muted' }, "router's default");
    const left = (Date.parse(r.cert_not_after) - Date.now()) / 86400000;
    const day = r.cert_not_after.slice(0, 10);
    if (left < 0) return h('span', { class: 'bad' }, 'expired ' + day);
    return h('span', { class: left < 14 ? 'warn' : '' }, 'own, expires ' + day);
  };
  replace(page.domains, h('div', { class: 'scroll' }, h('table', { id: 'domain-list' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Domain'), h('th', { scope: 'col' }, 'HTTPS'), h('th', { scope: 'col' }, 'Certificate'))),
    h('tbody', {}, routes.map(r => h('tr', { 'data-domain': r.domain },
      h('td', { class: 'mono' }, r.domain, r.default ? h('span', { class: 'muted' }, ' (default)') : ''),
      h('td', {}, r.https_only ? 'only' : 'optional'),
      h('td', {}, cert(r))))))));
}

// ---- log tail ----

// followLog streams the app's log (NDJSON) into the page, and follows it
// again from the last line when the stream breaks.
async function followLog(page, since) {
  const q = new URLSearchParams({ follow: '1', lines: since ? '1000' : '100' });
  if (since) q.set('since', since);
  let retry = 3000;
  try {
    const resp = await fetch('/v1/apps/' + page.app.name + '/log?' + q.toString(), { credentials: 'same-origin' });
    if (resp.status === 401) { toLogin('Your session ended; sign in again.'); return; }
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      logNote(page, 'The log is unavailable: ' + ((body.error && body.error.message) || resp.statusText));
      retry = 15000;
    } else {
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const text = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (text.trim()) logLine(page, JSON.parse(text));
        }
      }
    }
  } catch (e) {
    logNote(page, 'The log stream broke off (' + e.message + '); following it again.');
  }
  setTimeout(() => followLog(page, page.lastLogTime || ''), retry);
}

function logLine(page, l) {
  const key = l.time + '\u0000' + l.source + '\u0000' + (l.job || '') + '\u0000' + l.msg;
  page.seenLog = page.seenLog || new Set();
  if (page.seenLog.has(key)) return;
  page.seenLog.add(key);
  page.lastLogTime = l.time;
  page.lastNote = '';
  const src = l.source === 'app' ? 'app[' + l.type + '.' + l.index + ']' : l.source;
  addLogRow(page, h('div', {}, h('span', { class: 't' }, l.time.slice(11, 19)), ' ',
    h('span', { class: 'src ' + l.source }, src + ':'), ' ', l.msg));
}

function logNote(page, text) {
  // A note that only repeats the last one is left out.
  if (page.lastNote === text) return;
  page.lastNote = text;
  addLogRow(page, h('div', { class: 'gantry' }, text));
}

function addLogRow(page, row) {
  const el = page.log;
  const atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
  el.append(row);
  while (el.childElementCount > 500) el.firstElementChild.remove();
  if (page.seenLog && page.seenLog.size > 2000) page.seenLog = new Set();
  if (atEnd) el.scrollTop = el.scrollHeight;
}

document.addEventListener('DOMContentLoaded', start);
