// The foryou console (docs/CONSOLE.md): one page, plain JavaScript, no build
// step. Every action is a request to the public API (docs/API.md) with the
// key the user typed; the console holds no power the API does not give that
// key, and stores nothing in the browser (the key lives in this module's
// memory only).
import { barChart, formatNumber, table } from './charts.js';
import { verifyAuditLog } from './audit_verify.js';

const $ = (id) => document.getElementById(id);

const state = {
  key: '',            // the API key, in memory only
  jurisdiction: '',   // X-Foryou-Jurisdiction of the users looked at
  region: null,       // GET /v1/region, for the signed-in principal
  user: '',           // the explorer's user
  current: null,      // the explorer's current page (GET /v1/feed?explain=true)
  previous: null,
  lastAction: null,   // {type, video, creator, tags} of the last event sent
  recentUsers: [],
  healthTimer: null,
  lastMetrics: null,
};

// ---- The API, and its errors in words.

async function api(method, path, { body, personal = false } = {}) {
  const headers = {};
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  if (personal && state.jurisdiction) headers['X-Foryou-Jurisdiction'] = state.jurisdiction;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    return { status: 0, json: null, error: { code: 'network', message: `the server did not answer (${err.message})` } };
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: res.status, json, text, error: res.ok ? null : (json && json.error) || { code: String(res.status), message: text } };
}

// The API's refusal, as a person should read it.
function explain(res) {
  const e = res.error || {};
  switch (res.status) {
    case 401: return ['Not signed in (401 unauthenticated)', `${e.message}. Sign in with a valid API key.`];
    case 403: return ['Not allowed (403 forbidden)', e.message];
    case 421: return [`Wrong region (421 misdirected): these users live in region ${e.home_region}`,
      `${e.message}. Personal data is never proxied across a border: use region ${e.home_region}'s console.`];
    case 404: return ['Not found (404)', e.message];
    case 503: return ['Unavailable (503), try again shortly', e.message];
    case 0: return ['No answer', e.message];
    default: return [`${res.status} ${e.code || ''}`, e.message];
  }
}

function showMessage(res) {
  const box = $('message');
  if (!res) { box.hidden = true; box.textContent = ''; return; }
  const [title, detail] = explain(res);
  box.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = title;
  box.append(strong, document.createTextNode(detail || ''));
  box.dataset.status = String(res.status);
  box.hidden = false;
}

function setStatus(id, text, kind = '') {
  const e = $(id);
  e.textContent = text;
  e.className = `status ${kind}`;
}

function may(capability) {
  return !!state.region && state.region.principal.may.includes(capability);
}

// ---- Navigation and signing in.

const views = ['explorer', 'user', 'region', 'health', 'results'];
// What each view needs of the principal (GET /v1/region's principal.may).
const needs = { explorer: 'personal_data', user: 'personal_data', region: 'region_read', health: null, results: null };

function show(view) {
  for (const v of [...views, 'signin']) $(`view-${v}`).hidden = v !== view;
  for (const b of document.querySelectorAll('nav button')) {
    if (b.dataset.view === view) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  clearInterval(state.healthTimer);
  state.healthTimer = null;
  if (view === 'region') loadRegion();
  if (view === 'health') startHealth();
  if (view === 'results') loadResults();
  if (view === 'user' && state.user && !$('user-id').value) $('user-id').value = state.user;
}

function applyPrincipal() {
  const r = state.region;
  const p = r.principal;
  $('where').textContent = r.region ? `region ${r.region.name} · ${r.region.jurisdiction} · ${r.region.operator}` : 'open mode (no policy)';
  $('session').hidden = r.mode !== 'policy';
  $('principal').textContent = p.role ? `${p.name} (${p.role})` : p.name;
  for (const b of document.querySelectorAll('nav button')) {
    const need = needs[b.dataset.view];
    b.disabled = !!need && !may(need);
    b.title = b.disabled ? `${p.name} may not use this view` : '';
  }
  const list = $('jurisdictions');
  list.replaceChildren();
  for (const reg of r.regions) for (const j of reg.primary_for) list.appendChild(new Option(j));
  if (!state.jurisdiction && r.region) state.jurisdiction = [...r.region.primary_for][0] || '';
  $('jurisdiction').value = state.jurisdiction;
  const first = views.find((v) => !needs[v] || may(needs[v]));
  show(first);
}

async function start() {
  const res = await api('GET', '/v1/region');
  if (res.status === 200) {
    state.region = res.json;
    applyPrincipal();
  } else if (res.status === 401) {
    show('signin');
  } else {
    showMessage(res);
  }
}

async function signIn(ev) {
  ev.preventDefault();
  state.key = $('key').value.trim();
  state.jurisdiction = $('signin-jurisdiction').value.trim();
  const res = await api('GET', '/v1/region');
  if (res.status !== 200) {
    state.key = '';
    showMessage(res);
    return;
  }
  $('key').value = '';
  showMessage(null);
  state.region = res.json;
  applyPrincipal();
}

// A fresh page: the key and everything the last principal saw are gone.
function signOut() {
  state.key = '';
  location.reload();
}

// ---- Feed explorer.

const sourceWords = {
  co_engagement: 'people who liked what you liked',
  ann: 'close to your taste',
  session: 'follows what you just did',
  followed: 'a creator you follow',
  trending: 'trending',
  fresh: 'new',
  catalog: 'from the catalog',
};
const headWords = {
  complete: 'watch to the end', replay: 'replay', like: 'like', share: 'share', follow: 'follow',
  skip: 'skip', not_interested: 'not interested',
};

function rememberUser(user) {
  if (!user || state.recentUsers.includes(user)) return;
  state.recentUsers.unshift(user);
  $('recent-users').replaceChildren(...state.recentUsers.map((u) => new Option(u)));
}

function forgetUser(user) {
  state.recentUsers = state.recentUsers.filter((u) => u !== user);
  $('recent-users').replaceChildren(...state.recentUsers.map((u) => new Option(u)));
  if (state.user === user) {
    state.user = '';
    state.current = state.previous = state.lastAction = null;
    $('explorer-user').value = '';
    $('feed-current').replaceChildren();
    $('feed-previous').replaceChildren();
    $('feed-previous-col').hidden = true;
    setStatus('explorer-status', '');
  }
}

// Why an item of the new page follows the last action, or ''.
function followsAction(item) {
  const a = state.lastAction;
  if (!a || (a.type !== 'like' && a.type !== 'play')) return '';
  if (item.reasons.some((r) => r.includes(a.video))) return `follows your ${a.type} of ${a.video}`;
  if (a.creator && item.creator_id === a.creator) return `same creator as ${a.video} (@${a.creator})`;
  const shared = (item.tags || []).find((t) => (a.tags || []).includes(t));
  if (shared) return `shares #${shared} with ${a.video}`;
  return '';
}

function card(item, rank, { live }) {
  const li = document.createElement('li');
  li.className = 'card';
  li.dataset.video = item.video_id;
  const head = document.createElement('header');
  const r = document.createElement('span'); r.className = 'rank'; r.textContent = `#${rank}`;
  const v = document.createElement('span'); v.className = 'vid'; v.textContent = item.video_id;
  const c = document.createElement('span'); c.textContent = item.creator_id ? `@${item.creator_id}` : '';
  const s = document.createElement('span'); s.className = 'score'; s.textContent = `score ${formatNumber(item.score, 3)}`;
  head.append(r, v, c, s);
  li.appendChild(head);
  if (item.tags && item.tags.length) {
    const tags = document.createElement('div'); tags.className = 'tags';
    for (const t of item.tags) { const x = document.createElement('span'); x.textContent = `#${t}`; tags.appendChild(x); }
    li.appendChild(tags);
  }
  if (live) {
    const why = followsAction(item);
    if (why) {
      li.classList.add('changed');
      const w = document.createElement('div'); w.className = 'changed-why'; w.textContent = `New: ${why}`;
      li.appendChild(w);
    }
  }
  const ul = document.createElement('ul'); ul.className = 'reasons';
  for (const reason of item.reasons) { const x = document.createElement('li'); x.textContent = reason; ul.appendChild(x); }
  li.appendChild(ul);
  const src = document.createElement('div'); src.className = 'sources';
  src.textContent = `Found by: ${item.sources.map((x) => sourceWords[x] || x).join(', ')}`;
  li.appendChild(src);
  if (item.components) {
    // score = sum of weight x P(outcome): one row per head that counts.
    const grid = document.createElement('div'); grid.className = 'components';
    grid.setAttribute('aria-label', 'What the score is made of');
    const terms = item.components.filter((x) => x.weight !== 0);
    const top = Math.max(1e-9, ...terms.map((x) => Math.abs(x.weight * x.probability)));
    for (const x of terms) {
      const term = x.weight * x.probability;
      const name = document.createElement('span'); name.textContent = headWords[x.head] || x.head;
      const bar = document.createElement('span'); bar.className = term < 0 ? 'bar negative' : 'bar';
      const fill = document.createElement('span'); fill.style.width = `${(Math.abs(term) / top) * 100}%`;
      bar.appendChild(fill);
      const val = document.createElement('span');
      val.textContent = `${term < 0 ? '−' : '+'}${Math.abs(term).toFixed(3)}`;
      val.title = `P(${x.head}) ${formatNumber(x.probability, 3)} × weight ${formatNumber(x.weight, 3)}`;
      grid.append(name, bar, val);
    }
    li.appendChild(grid);
  }
  if (live) {
    const actions = document.createElement('div'); actions.className = 'actions';
    for (const [type, label] of [['play', 'Play to the end'], ['like', 'Like'], ['skip', 'Skip'], ['not_interested', 'Not interested']]) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.dataset.type = type;
      b.setAttribute('aria-label', `${label}: ${item.video_id}`);
      b.addEventListener('click', () => sendEvent(type, item.video_id, item));
      actions.appendChild(b);
    }
    li.appendChild(actions);
  }
  return li;
}

function renderFeeds() {
  const cur = $('feed-current');
  cur.replaceChildren();
  if (state.current) {
    state.current.items.forEach((it, i) => cur.appendChild(card(it, i + 1, { live: true })));
    const changed = cur.querySelectorAll('.card.changed').length;
    $('feed-current-title').textContent = state.previous ? 'Next page' : 'Feed';
    if (state.lastAction && state.previous) {
      setStatus('explorer-status', `After your ${state.lastAction.type.replace('_', ' ')} of ${state.lastAction.video}: ` +
        `${changed} of ${state.current.items.length} items follow it (highlighted); ${state.current.candidates} candidates were scored.`);
    } else {
      setStatus('explorer-status', `${state.current.items.length} items for ${state.user}, from ${state.current.candidates} candidates scored.`);
    }
  }
  const prev = $('feed-previous');
  prev.replaceChildren();
  $('feed-previous-col').hidden = !state.previous;
  if (state.previous) state.previous.items.forEach((it, i) => prev.appendChild(card(it, i + 1, { live: false })));
}

async function loadFeed({ keepPrevious = false } = {}) {
  const n = $('explorer-n').value;
  const res = await api('GET', `/v1/feed?user_id=${encodeURIComponent(state.user)}&n=${n}&explain=true`, { personal: true });
  if (res.status !== 200) { showMessage(res); return false; }
  showMessage(null);
  state.previous = keepPrevious ? state.current : null;
  if (!keepPrevious) state.lastAction = null;
  state.current = res.json;
  rememberUser(state.user);
  renderFeeds();
  return true;
}

async function sendEvent(type, video, item) {
  if (!state.user) { setStatus('explorer-status', 'Pick a user first.', 'bad'); return; }
  const event = { user_id: state.user, video_id: video, type };
  if (type === 'play') event.watch_ratio = 1.0;
  const res = await api('POST', '/v1/events', { body: { events: [event] }, personal: true });
  if (res.status !== 200) { showMessage(res); return; }
  let creator = item && item.creator_id, tags = item && item.tags;
  if (!item) {
    const v = await api('GET', `/v1/videos/${encodeURIComponent(video)}`);
    if (v.status === 200) { creator = v.json.creator_id; tags = v.json.tags; }
  }
  state.lastAction = { type, video, creator, tags };
  await loadFeed({ keepPrevious: true });
}

function newUserId() {
  const a = new Uint8Array(4);
  crypto.getRandomValues(a);
  return `console-${Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

// ---- User.

async function showUser(ev) {
  if (ev) ev.preventDefault();
  const user = $('user-id').value.trim();
  if (!user) return;
  $('user-events').replaceChildren();
  const res = await api('GET', `/v1/users/${encodeURIComponent(user)}`, { personal: true });
  if (res.status !== 200) {
    $('user-body').hidden = true;
    if (res.status === 404) { showMessage(null); setStatus('user-status', `No user ${user} in this region.`, 'bad'); }
    else showMessage(res);
    return;
  }
  showMessage(null);
  setStatus('user-status', '');
  const u = res.json;
  rememberUser(user);
  const dl = $('user-profile');
  dl.replaceChildren();
  const list = (xs) => (xs.length ? `${xs.length}: ${xs.slice(0, 12).join(', ')}${xs.length > 12 ? ', …' : ''}` : '0');
  const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '–');
  const counts = Object.entries(u.event_counts).filter(([, c]) => c > 0).map(([k, c]) => `${k} ${c}`).join(', ');
  const facts = [
    ['User', u.id],
    ['Home jurisdiction', u.home_jurisdiction || '(none recorded: open mode)'],
    ['First seen', when(u.first_seen)], ['Last seen', when(u.last_seen)],
    ['Events', counts || 'none'], ['Videos seen', String(u.videos_seen)],
    ['Liked', list(u.liked)], ['Follows', list(u.follows)], ['Not interested', list(u.not_interested)],
    ['Top tags', u.top_tags.map((t) => `#${t.tag} (${formatNumber(t.affinity, 2)})`).join(', ') || '–'],
    ['Recent positives', u.recent_positives.map((p) => `${p.how} ${p.video_id}`).join('; ') || '–'],
  ];
  for (const [k, v] of facts) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  }
  $('user-body').hidden = false;
  $('user-body').dataset.user = user;
}

async function fetchExport(user) {
  const res = await api('GET', `/v1/users/${encodeURIComponent(user)}/export`, { personal: true });
  if (res.status !== 200) { showMessage(res); return null; }
  return res;
}

async function showHistory() {
  const user = $('user-body').dataset.user;
  const res = await fetchExport(user);
  if (!res) return;
  const events = res.json.events.slice(-100).reverse();
  const rows = events.map((e) => [new Date(e.ts).toISOString().replace('T', ' ').slice(0, 19), e.type, e.video_id,
    e.watch_ratio === undefined ? '' : formatNumber(e.watch_ratio, 3)]);
  const h = document.createElement('h3');
  h.textContent = `History: ${res.json.events.length} events (newest first${res.json.events.length > 100 ? ', latest 100' : ''})`;
  $('user-events').replaceChildren(h, table(['time (UTC)', 'event', 'video', 'watch ratio'], rows, [3]));
}

async function downloadExport() {
  const user = $('user-body').dataset.user;
  const res = await fetchExport(user);
  if (!res) return;
  const url = URL.createObjectURL(new Blob([res.text], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `foryou-export-${user}.json`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  setStatus('user-status', `Export of ${user} downloaded (${res.json.events.length} events).`, 'ok');
}

function askErase() {
  $('erase-confirm').value = '';
  $('erase-dialog').showModal();
  $('erase-confirm').focus();
}

async function erase() {
  const user = $('user-body').dataset.user;
  if ($('erase-confirm').value !== user) {
    setStatus('user-status', 'Not erased: the id typed did not match.', 'bad');
    return;
  }
  const res = await api('DELETE', `/v1/users/${encodeURIComponent(user)}`, { personal: true });
  if (res.status !== 200) { showMessage(res); return; }
  showMessage(null);
  $('user-body').hidden = true;
  $('user-events').replaceChildren();
  $('user-id').value = '';
  forgetUser(user);
  setStatus('user-status', `Erased ${user}: their events and profile are gone from this region, and their key is ` +
    'destroyed, so their records in every backup can no longer be read.', 'ok');
}

// ---- Region.

function policyInWords(r) {
  const div = document.createElement('div');
  div.className = 'policy';
  const p = (text, cls) => { const e = document.createElement('p'); e.textContent = text; if (cls) e.className = cls; div.appendChild(e); };
  if (r.mode !== 'policy') {
    p('Open mode: no policy is loaded, so no key is asked for and no residency is enforced. Start the server with ' +
      '--policy and --region to keep each user\'s data in their jurisdiction.');
    return div;
  }
  const list = (xs) => (xs.length ? xs.join(', ') : 'nobody');
  for (const reg of r.regions) {
    const here = r.region && reg.name === r.region.name;
    p(`${here ? 'This region, ' : ''}${reg.name} (servers in ${reg.jurisdiction}, run by ${reg.operator}) holds the ` +
      `data of users from ${list(reg.primary_for)} as their home` +
      `${reg.backup_for.length ? `, and backups of users from ${list(reg.backup_for)}` : ', and no backups'}.`, here ? 'here' : '');
  }
  if (r.region) {
    for (const j of r.region.primary_for) {
      const at = r.regions.filter((x) => x.backup_for.includes(j)).map((x) => x.name);
      p(`Users from ${j} are backed up ${at.length ? `only to ${at.join(', ')}` : 'nowhere'}; no other region may read or hold their data.`);
    }
  }
  return div;
}

async function loadRegion() {
  const res = await api('GET', '/v1/region');
  if (res.status !== 200) { showMessage(res); return; }
  const r = res.json;
  state.region = { ...r, principal: r.principal };
  $('region-policy').replaceChildren(policyInWords(r));
  const backups = [];
  if (r.cluster) backups.push(document.createTextNode(`Cluster mode: this replica has applied the region's log up to record ${r.log.last_seq} ` +
    `(${r.log.followed_records} written by other replicas).`));
  if (r.backups.length) {
    backups.push(table(['backup region', 'holds up to record', 'records behind', 'seconds behind', 'failures', 'last error'],
      r.backups.map((b) => [b.region, String(b.shipped_seq), String(b.lag_records), formatNumber(b.lag_seconds, 3),
        String(b.failures), b.last_error || '–']), [1, 2, 3, 4]));
  } else if (!r.cluster) {
    const e = document.createElement('p');
    e.textContent = `This server ships no backups (log at record ${r.log.last_seq}).`;
    backups.push(e);
  }
  if (r.backups_held.length) {
    const e = document.createElement('p');
    e.textContent = `Holds sealed backups of: ${r.backups_held.join(', ')}.`;
    backups.push(e);
  }
  $('region-backups').replaceChildren(...backups);
  const keys = $('region-keys');
  keys.replaceChildren();
  const k = r.keys;
  for (const [name, value] of [
    ['Store encryption', k.encrypted ? 'on: per-user data keys, wrapped by the region key' : 'off (open mode)'],
    ['Region key fingerprint', k.region_key_fingerprint || '–'],
    ['Audit log public key', k.audit_public_key || '–'],
    ['Audit key fingerprint', k.audit_public_key_fingerprint || '–'],
  ]) {
    const dt = document.createElement('dt'); dt.textContent = name;
    const dd = document.createElement('dd'); dd.textContent = value; dd.className = 'mono';
    keys.append(dt, dd);
  }
  const audit = r.audit_log && may('audit_read');
  $('region-audit').hidden = !audit;
  $('region-residency').hidden = !(r.mode === 'policy' && may('audit_read'));
  if (audit) await loadAudit();
  if (r.mode === 'policy' && may('audit_read')) await loadResidency();
}

function renderAuditHead(h, verified) {
  const dl = $('audit-head');
  dl.replaceChildren();
  for (const [k, v] of [['Entries (tree size)', String(h.tree_size)],
    ['Signed at', h.tree_size ? new Date(h.timestamp_ms).toISOString() : '–'],
    ['Root hash', h.root_hash], ['Signature', h.signature || '–'],
    ['Shown', verified ? 'as verified in this browser' : 'as the server sent it (not verified yet)']]) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v; dd.className = 'mono';
    dl.append(dt, dd);
  }
}

function renderAuditEntries(entries) {
  const rows = entries.slice(-20).reverse().map((e) => [String(e.seq), new Date(e.ts_ms).toISOString().slice(0, 19),
    e.principal, e.action, e.subject, e.outcome, e.request_id || '–']);
  $('audit-entries').replaceChildren(table(['#', 'time (UTC)', 'principal', 'action', 'subject (pseudonym)', 'outcome', 'request id'], rows, [0]));
}

async function loadAudit() {
  // The head's size says where the latest 20 start; the page carries the
  // head its entries belong to, and that is what is shown.
  const head = await api('GET', '/v1/audit/head');
  if (head.status !== 200) { showMessage(head); return; }
  const from = Math.max(0, head.json.tree_size - 20);
  const page = await api('GET', `/v1/audit/entries?from=${from}&limit=20`);
  if (page.status !== 200) { showMessage(page); return; }
  renderAuditHead(page.json, false);
  renderAuditEntries(page.json.entries.filter((e) => e.seq < page.json.tree_size));
}

async function runVerify() {
  setStatus('audit-verify-result', 'Verifying…');
  delete $('audit-verify-result').dataset.verified;
  let savedHead = null;
  const savedText = $('audit-saved-head').value.trim();
  if (savedText) {
    try { savedHead = JSON.parse(savedText); } catch {
      setStatus('audit-verify-result', '✘ the saved head is not JSON', 'bad');
      $('audit-verify-result').dataset.verified = 'false';
      return;
    }
  }
  const result = await verifyAuditLog(async (from, limit) => {
    const res = await api('GET', `/v1/audit/entries?from=${from}&limit=${limit}`);
    if (res.status !== 200) throw new Error(explain(res).join(': '));
    return res.json;
  }, (done, total) => setStatus('audit-verify-result', `Verifying… ${done} of ${total} entries`),
  { expectedKey: $('audit-expected-key').value.trim(), savedHead }).catch((err) => ({ ok: false, message: err.message }));
  setStatus('audit-verify-result', `${result.ok ? '✔ ' : '✘ '}${result.message}`, result.ok ? 'ok' : 'bad');
  if (result.ok) {
    // What is on screen is now what was verified.
    renderAuditHead(result.head, true);
    renderAuditEntries(result.entries);
  }
  $('audit-verify-result').dataset.verified = String(result.ok);
}

async function loadResidency() {
  const res = await api('GET', '/v1/residency');
  if (res.status !== 200) { showMessage(res); return; }
  const r = res.json;
  const out = [table(['jurisdiction', 'held here as', 'users', 'events'],
    r.held.map((h) => [h.jurisdiction, h.held_as, String(h.users), String(h.events)]), [2, 3])];
  if (r.backups_held.length) {
    out.push(table(['backup of region', 'jurisdiction', 'held as', 'users', 'shredded users', 'records'],
      r.backups_held.map((b) => [b.source_region, b.jurisdiction, b.held_as, String(b.users), String(b.shredded_users), String(b.records)]),
      [3, 4, 5]));
  }
  const v = document.createElement('p');
  v.textContent = r.violation_count
    ? `${r.violation_count} violations: ${Object.entries(r.violations_by_problem).map(([p, n]) => `${p} (${n})`).join('; ')}`
    : 'No violations: every user held here lives in a jurisdiction this region is primary for, and every backup held is approved.';
  v.className = r.violation_count ? 'status bad' : 'status ok';
  out.push(v);
  $('residency').replaceChildren(...out);
}

// ---- Health, from /metrics.

function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (ms, name, pred = () => true) => ms.filter((m) => m.name === name && pred(m.labels)).reduce((a, m) => a + m.value, 0);

async function pollHealth() {
  let res;
  try { res = await fetch('/metrics'); } catch { return; }
  if (!res.ok) return;
  const ms = parseMetrics(await res.text());
  const now = performance.now();
  const prev = state.lastMetrics;
  state.lastMetrics = { ms, at: now };
  const dt = prev ? (now - prev.at) / 1000 : 0;
  const rate = (name, pred) => (prev && dt > 0 ? Math.max(0, (sum(ms, name, pred) - sum(prev.ms, name, pred)) / dt) : null);
  const tiles = [
    ['ready', sum(ms, 'foryou_ready') === 1 ? 'yes' : 'no'],
    ['requests/s', rate('foryou_http_requests_total')],
    ['feeds/s', rate('foryou_http_requests_total', (l) => l.endpoint === 'feed')],
    ['events ingested/s', rate('foryou_events_ingested_total')],
    ['videos', sum(ms, 'foryou_videos')],
    ['users', sum(ms, 'foryou_users')],
    ['events stored', sum(ms, 'foryou_events_stored')],
    ['ANN index size', sum(ms, 'foryou_ann_index_size')],
    ['co-engagement edges', sum(ms, 'foryou_co_engagement_edges')],
    ['open connections', sum(ms, 'foryou_http_connections')],
  ];
  $('health-summary').replaceChildren(...tiles.map(([k, v]) => {
    const t = document.createElement('div'); t.className = 'tile';
    const vv = document.createElement('div'); vv.className = 'v';
    vv.textContent = typeof v === 'number' ? formatNumber(v, 3) : v === null ? '…' : v;
    const kk = document.createElement('div'); kk.className = 'k'; kk.textContent = k;
    t.append(vv, kk);
    return t;
  }));
  // Requests per second by endpoint (the whole life of the process until
  // there is a previous sample).
  const endpoints = [...new Set(ms.filter((m) => m.name === 'foryou_http_requests_total').map((m) => m.labels.endpoint))];
  const bars = endpoints.map((e) => ({ label: e, value: prev ? rate('foryou_http_requests_total', (l) => l.endpoint === e)
    : sum(ms, 'foryou_http_requests_total', (l) => l.endpoint === e), highlight: e === 'feed' }))
    .filter((b) => b.value > 0).sort((a, b) => b.value - a.value);
  $('health-rates').replaceChildren(bars.length ? barChart({ title: prev ? 'requests/s by endpoint' : 'requests since start',
    bars }) : document.createTextNode('No requests yet.'));
  // Feed latency: the histogram's buckets, as feeds per bucket over the
  // last interval (since start until there is one with feeds in it).
  const buckets = (list) => list.filter((m) => m.name === 'foryou_http_request_duration_seconds_bucket' && m.labels.endpoint === 'feed')
    .map((m) => ({ le: m.labels.le === '+Inf' ? Infinity : Number(m.labels.le), n: m.value })).sort((a, b) => a.le - b.le);
  const histogram = (bs) => bs.map((b, i) => ({ label: b.le === Infinity ? `> ${formatNumber(bs[i - 1].le * 1000)} ms`
    : `≤ ${formatNumber(b.le * 1000)} ms`, value: b.n - (i ? bs[i - 1].n : 0) }));
  const now_ = histogram(buckets(ms));
  let hist = now_, span = 'since start';
  if (prev) {
    const before = histogram(buckets(prev.ms));
    const recent = now_.map((h, i) => ({ label: h.label, value: h.value - (before[i] ? before[i].value : 0) }));
    if (recent.some((h) => h.value > 0)) { hist = recent; span = `in the last ${formatNumber(dt, 2)} s`; }
  }
  $('health-latency').replaceChildren(hist.some((h) => h.value > 0)
    ? barChart({ title: `feeds per latency bucket, ${span}`, bars: hist })
    : document.createTextNode('No feeds served yet.'));
}

function startHealth() {
  pollHealth();
  state.healthTimer = setInterval(pollHealth, 2000);
}

// ---- Quality and performance: the results compiled in with this build.

async function getResult(name) {
  const res = await fetch(`results/${name}`);
  return res.ok ? res.json() : null;
}

async function loadResults() {
  const out = [];
  const k = await getResult('kuairec.json');
  if (k) {
    const h = document.createElement('h3');
    h.textContent = `KuaiRec (short video, watch ratio): ${k.users} users, ${k.items} videos`;
    out.push(h);
    for (const metric of ['ndcg@10', 'auc']) {
      const bars = [{ label: 'foryou', value: k[metric], highlight: true },
        ...Object.entries(k.baselines).map(([name, b]) => ({ label: name.replace(/_/g, ' '), value: b[metric] }))];
      out.push(barChart({ title: `${metric.toUpperCase()} (higher is better)`, bars }));
    }
  }
  for (const [file, title] of [['beauty.json', 'Amazon Beauty'], ['sports.json', 'Amazon Sports and Outdoors']]) {
    const r = await getResult(file);
    if (!r) continue;
    const h = document.createElement('h3');
    h.textContent = `${title} (next-item, S3-Rec protocol): ${r.users} users, ${r.items} items`;
    out.push(h);
    for (const metric of ['hr@10', 'ndcg@10']) {
      out.push(barChart({ title: `${metric.toUpperCase()}`, bars: [{ label: 'foryou', value: r[metric], highlight: true },
        ...Object.entries(r.baselines).map(([name, b]) => ({ label: name.replace(/_/g, ' '), value: b[metric] }))] }));
    }
  }
  for (const [file, title] of [['bench-quick.json', 'foryou bench --quick'], ['bench-1m.json', 'foryou bench at 1M videos × 1M users']]) {
    const b = await getResult(file);
    if (!b) continue;
    const h = document.createElement('h3');
    h.textContent = `${title}: ${b.videos} videos, ${b.users} users (absolute times drift 2× on the shared machine they ran on)`;
    out.push(h);
    out.push(barChart({ title: 'feed latency (ms)', unit: ' ms', bars: [
      { label: 'p50', value: b.feed_p50_ms }, { label: 'p99', value: b.feed_p99_ms, highlight: true }, { label: 'p99.9', value: b.feed_p999_ms }] }));
    out.push(table(['measure', 'value'], [
      ['feeds/s', formatNumber(b.feed_qps)], ['feed / HTTP ceiling', formatNumber(b.feed_vs_ceiling, 3)],
      ['durable ingest, events/s', formatNumber(b.ingest_events_per_s)], ['freshness p99 (ms)', formatNumber(b.freshness_ms_p99)],
      ['ANN recall@100', formatNumber(b.ann_recall_at_100, 3)], ['RSS (MB)', formatNumber(b.rss_mb)],
    ], [1]));
  }
  if (!out.length) out.push(document.createTextNode('No results were built into this binary.'));
  $('results').replaceChildren(...out);
}

// ---- Wiring.

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('nav button')) b.addEventListener('click', () => show(b.dataset.view));
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  $('jurisdiction').addEventListener('change', () => { state.jurisdiction = $('jurisdiction').value.trim(); });
  $('explorer-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.user = $('explorer-user').value.trim();
    state.previous = null;
    loadFeed();
  });
  $('explorer-new').addEventListener('click', () => {
    state.user = newUserId();
    $('explorer-user').value = state.user;
    loadFeed();
  });
  $('event-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.user = $('explorer-user').value.trim();
    sendEvent(ev.submitter.dataset.type, $('event-video').value.trim(), null);
  });
  $('user-form').addEventListener('submit', showUser);
  $('user-history').addEventListener('click', showHistory);
  $('user-export').addEventListener('click', downloadExport);
  $('user-erase').addEventListener('click', askErase);
  $('erase-dialog').addEventListener('close', () => { if ($('erase-dialog').returnValue === 'erase') erase(); });
  $('audit-verify').addEventListener('click', runVerify);
  start();
});
