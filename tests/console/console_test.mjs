#!/usr/bin/env node
// Browser test of the web console (issue 14, docs/CONSOLE.md): Debian's
// chromium, driven by puppeteer-core, against real `foryou serve` processes
// on loopback.
//
// Open mode, demo world:
//   - the explorer loads a demo user's feed as cards (creator, tags, score,
//     reasons, the score's components);
//   - a like changes the next feed: after liking cat1 (creator mia, tag
//     cats), the next page shows cat2, highlighted as following the like,
//     beside the previous page;
//   - not interested removes a video for good: gone from the next pages and
//     counted in the user's profile;
//   - the health and results views draw their charts.
// Policy mode, us backing up to sg:
//   - the console asks for a key; a wrong key gets the 401, in words;
//   - an auditor key sees the signed tree head, verifies it in the browser,
//     sees the latest entries and the residency report, and no user data
//     (no user id anywhere on the page; the explorer and user views are
//     disabled, and the API refuses them too);
//   - a service key never sees the audit view (hidden; the API says 403);
//   - a user of another region's jurisdiction gets the API's 421, in words;
//   - erasure, confirmed, removes the user from every view and the API.
// Nothing is stored in the browser (localStorage, sessionStorage, cookies).
//
// Screenshots of each view are written to CONSOLE_SCREENSHOTS (a directory;
// docs/console/ holds the committed ones), or to
// $TMPDIR/foryou-console-screenshots.
//
//   FORYOU=build/release/foryou node tests/console/console_test.mjs
//   CONSOLE_SCREENSHOTS=docs/console FORYOU=build/release/foryou node tests/console/console_test.mjs
//
// Needs `npm ci` in tests/console and Debian's chromium (scripts/install-deps.sh
// does both). Prints one line per failed check; exits 1 on failure. Stops
// every server and the browser it started, by PID.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { KEYS, startServer as startServerIn, startTwoRegions, stopServer, track } from '../lib/servers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const FORYOU = path.resolve(process.env.FORYOU || path.join(ROOT, 'build/release/foryou'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'foryou-console-'));
const SHOTS = path.resolve(process.env.CONSOLE_SCREENSHOTS || path.join(os.tmpdir(), 'foryou-console-screenshots'));
fs.mkdirSync(SHOTS, { recursive: true });

const failures = [];
let checks = 0;
const check = (ok, what) => {
  checks++;
  if (!ok) { failures.push(what); console.log(`FAIL ${what}`); }
  return ok;
};

// ---- servers (tests/lib/servers.mjs) and the browser, stopped by PID --------

process.on('exit', () => fs.rmSync(TMP, { recursive: true, force: true }));
const startServer = (name, args) => startServerIn(FORYOU, TMP, name, args);

async function api(server, method, target, { body, key, jurisdiction } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (jurisdiction) headers['X-Foryou-Jurisdiction'] = jurisdiction;
  const res = await fetch(server.url + target, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

// ---- the browser --------------------------------------------------------------

if (!fs.existsSync(CHROMIUM)) {
  console.log(`FAIL no browser at ${CHROMIUM}: install Debian's chromium (scripts/install-deps.sh)`);
  process.exit(1);
}
const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--font-render-hinting=none'],
  defaultViewport: { width: 1360, height: 900 },
});
track(browser.process());

async function openConsole(server, label) {
  const page = await browser.newPage();
  page.on('pageerror', (err) => check(false, `${label}: script error in the page: ${err.message}`));
  page.on('console', (msg) => {
    // A Content-Security-Policy violation or a failed script shows here.
    if (msg.type() === 'error' && !/status of 4\d\d/.test(msg.text())) check(false, `${label}: console error: ${msg.text()}`);
  });
  const res = await page.goto(`${server.url}/console/`, { waitUntil: 'networkidle0' });
  check(res.status() === 200, `${label}: GET /console/ -> ${res.status()}`);
  const csp = res.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && !csp.includes('unsafe'), `${label}: the console's CSP is strict (${csp})`);
  return page;
}

const text = (page, sel) => page.$eval(sel, (e) => e.innerText).catch(() => '');
const visible = (page, sel) => page.$eval(sel, (e) => !e.closest('[hidden]') && e.getClientRects().length > 0).catch(() => false);
async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}
async function noStorage(page, label) {
  const s = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie }));
  check(s.local === 0 && s.session === 0 && s.cookie === '', `${label}: nothing stored in the browser (${JSON.stringify(s)})`);
}
async function clickNav(page, view) {
  await page.click(`nav button[data-view="${view}"]`);
}
const feedIds = (page, sel = '#feed-current') => page.$$eval(`${sel} > li.card`, (ls) => ls.map((l) => l.dataset.video));

// ---- open mode: the demo world ------------------------------------------------

async function openMode() {
  const s = await startServer('open', ['--demo', '--data-dir', path.join(TMP, 'open')]);
  const videos = [
    { id: 'cat1', creator_id: 'mia', duration_ms: 15000, tags: ['cats'], language: 'en' },
    { id: 'cat2', creator_id: 'mia', duration_ms: 21000, tags: ['cats'], language: 'en' },
  ];
  check((await api(s, 'POST', '/v1/videos', { body: { videos } })).status === 200, 'open: catalog write');
  const page = await openConsole(s, 'open');
  check(await visible(page, '#view-explorer'), 'open: the explorer is the first view, no sign-in in open mode');

  // A demo user's feed, as cards.
  await page.type('#explorer-user', 'u14');
  await page.click('#explorer-form button[type="submit"]');
  await page.waitForSelector('#feed-current > li.card');
  const cards = await page.$$eval('#feed-current > li.card', (ls) => ls.map((l) => ({
    video: l.dataset.video, text: l.innerText, components: l.querySelectorAll('.components > span.bar').length })));
  check(cards.length === 10, `open: u14's feed has 10 cards (${cards.length})`);
  check(cards.every((c) => /@\S+/.test(c.text) && /score/.test(c.text) && /Found by:/.test(c.text)),
    'open: every card shows its creator, score and sources in words');
  check(cards.every((c) => c.components >= 3), 'open: every card shows the components of its score');
  check(cards.some((c) => /because you|similar|trending|watch it to the end/.test(c.text)), 'open: cards give reasons');
  await shot(page, 'explorer-demo-user');

  // A like changes the next feed: the README's session.
  await page.$eval('#explorer-user', (e) => { e.value = ''; });
  await page.type('#explorer-user', 'newbie');
  await page.click('#explorer-form button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#explorer-status').innerText.includes('newbie'));
  const before = await feedIds(page);
  await page.type('#event-video', 'cat1');
  await page.click('#event-form button[data-type="like"]');
  await page.waitForFunction(() => document.querySelector('#explorer-status').innerText.startsWith('After your like of cat1'));
  const after = await feedIds(page);
  check(await visible(page, '#feed-previous-col'), 'open: the previous page stays beside the next one');
  check(after.includes('cat2'), `open: after liking cat1, cat2 is on the next page of 10 (${after.join(' ')})`);
  const cat2 = await page.$eval('#feed-current > li.card[data-video="cat2"]', (l) => ({ changed: l.classList.contains('changed'), text: l.innerText }))
    .catch(() => null);
  check(cat2 && cat2.changed && /mia|cat1/.test(cat2.text), `open: cat2 is highlighted as following the like (${cat2 && cat2.text})`);
  check(!after.some((v) => before.includes(v)), 'open: the next page repeats nothing of the first');
  await page.$eval('#feed-current > li.card.changed', (e) => e.scrollIntoView({ block: 'center' })).catch(() => {});
  await shot(page, 'explorer-like-changes-the-feed');
  await page.evaluate(() => window.scrollTo(0, 0));

  // Not interested removes a video for good.
  const victim = after.find((v) => v !== 'cat2');
  await page.click(`#feed-current > li.card[data-video="${victim}"] button[data-type="not_interested"]`);
  await page.waitForFunction((v) => document.querySelector('#explorer-status').innerText.startsWith(`After your not interested of ${v}`), {}, victim);
  const seen = new Set(await feedIds(page));
  for (let i = 0; i < 5; i++) {
    await page.click('#explorer-form button[type="submit"]');
    await page.waitForFunction((prev) => {
      const ids = [...document.querySelectorAll('#feed-current > li.card')].map((l) => l.dataset.video);
      return ids.length > 0 && ids.join() !== prev;
    }, {}, [...seen].slice(-10).join());
    for (const v of await feedIds(page)) seen.add(v);
  }
  check(!seen.has(victim), `open: ${victim}, marked not interested, is on none of the next 6 pages`);
  const direct = await api(s, 'GET', '/v1/feed?user_id=newbie&n=50');
  check(direct.status === 200 && !direct.json.items.some((i) => i.video_id === victim), 'open: nor in the API\'s feed');
  await clickNav(page, 'user');
  await page.$eval('#user-id', (e) => { e.value = 'newbie'; });
  await page.click('#user-form button[type="submit"]');
  await page.waitForSelector('#user-profile dt');
  const profile = await text(page, '#user-profile');
  check(/Not interested\s+1/.test(profile), `open: the profile counts the not-interested (${profile.replace(/\n/g, ' | ')})`);
  await page.click('#user-history');
  await page.waitForSelector('#user-events table');
  const history = await text(page, '#user-events');
  check(history.includes('not_interested') && history.includes('cat1'), 'open: the history lists the events sent');
  await shot(page, 'user');

  // Health and results draw from /metrics and the built-in results.
  await clickNav(page, 'health');
  await page.waitForFunction(() => document.querySelectorAll('#health-latency svg').length > 0, { timeout: 15000 });
  for (let i = 0; i < 5; i++) await api(s, 'GET', `/v1/feed?user_id=u${20 + i}&n=5`);
  await page.waitForFunction(() => /in the last/.test(document.querySelector('#health-latency').textContent), { timeout: 10000 })
    .catch(() => check(false, 'open: the latency histogram shows the feeds of the last interval'));
  const tiles = await text(page, '#health-summary');
  check(/videos/.test(tiles) && /2,52\d/.test(tiles), `open: health shows the catalog's size (${tiles.replace(/\n/g, ' ')})`);
  await shot(page, 'health');
  await clickNav(page, 'results');
  await page.waitForFunction(() => document.querySelectorAll('#results svg').length >= 4, { timeout: 15000 });
  const results = await text(page, '#results');
  check(/KuaiRec/.test(results) && /Beauty/.test(results), 'open: results plot the KuaiRec and Beauty evaluations');
  await shot(page, 'results');
  await noStorage(page, 'open');
  await page.close();
  await stopServer(s);
}

// ---- policy mode: two regions ---------------------------------------------------

async function policyMode() {
  const keys = KEYS;
  const { us, sg } = await startTwoRegions(FORYOU, TMP);

  // A small world, written through the API.
  const videos = [];
  for (let i = 0; i < 40; i++) videos.push({ id: `clip${i}`, creator_id: `maker${i % 5}`, duration_ms: 20000, tags: [`t${i % 4}`], language: 'en' });
  check((await api(us, 'POST', '/v1/videos', { body: { videos }, key: keys.operator })).status === 200, 'policy: catalog write');
  const users = ['zed-alpha', 'zed-bravo', 'zed-charlie'];
  let saved = null;  // a tree head an auditor saved early on
  for (const [n, u] of users.entries()) {
    if (n === 1) saved = (await api(us, 'GET', '/v1/audit/head', { key: keys.auditor })).json;
    const events = [0, 1, 2, 3].map((k) => ({ user_id: u, video_id: `clip${n * 4 + k}`, type: 'play', watch_ratio: 1.0 }));
    check((await api(us, 'POST', '/v1/events', { body: { events }, key: keys.service, jurisdiction: 'US' })).status === 200, `policy: events of ${u}`);
    check((await api(us, 'GET', `/v1/feed?user_id=${u}&n=5`, { key: keys.service, jurisdiction: 'US' })).status === 200, `policy: feed of ${u}`);
  }

  // The console asks for a key; a wrong one gets the API's 401, in words.
  let page = await openConsole(us, 'policy');
  check(await visible(page, '#view-signin'), 'policy: the console asks for an API key');
  await page.type('#key', 'not-a-key');
  await page.click('#signin-form button[type="submit"]');
  await page.waitForSelector('#message:not([hidden])');
  const wrong = await text(page, '#message');
  check(/401/.test(wrong) && /valid API key/.test(wrong), `policy: a wrong key gets the 401 in words (${wrong})`);
  check(await visible(page, '#view-signin'), 'policy: and stays signed out');
  await shot(page, 'signin-wrong-key');

  // The auditor: the audit log and residency, verified in the browser; no user data.
  await page.$eval('#key', (e) => { e.value = ''; });
  await page.type('#key', keys.auditor);
  await page.click('#signin-form button[type="submit"]');
  await page.waitForFunction(() => !document.querySelector('#view-region').hidden);
  check(await page.$eval('nav button[data-view="explorer"]', (b) => b.disabled), 'policy: an auditor cannot open the feed explorer');
  check(await page.$eval('nav button[data-view="user"]', (b) => b.disabled), 'policy: nor the user view');
  await page.waitForSelector('#audit-entries table');
  await page.waitForSelector('#residency table');
  const verify = async (expectedKey, savedHead) => {
    await page.$eval('#audit-bring', (d) => { d.open = true; });
    await page.$eval('#audit-expected-key', (e, v) => { e.value = v; }, expectedKey);
    await page.$eval('#audit-saved-head', (e, v) => { e.value = v; }, savedHead);
    await page.click('#audit-verify');
    await page.waitForFunction(() => document.querySelector('#audit-verify-result').dataset.verified !== undefined, { timeout: 30000 });
    return { ok: await page.$eval('#audit-verify-result', (e) => e.dataset.verified === 'true'), text: await text(page, '#audit-verify-result') };
  };
  const head = await api(us, 'GET', '/v1/audit/head', { key: keys.auditor });
  let v = await verify('', '');
  check(v.ok && v.text.includes(`${head.json.tree_size} entries`) && /paste the key you recorded/.test(v.text),
    `policy: the auditor verifies the signed tree head, and is told it is bound to no recorded key (${v.text})`);
  v = await verify('ab'.repeat(32), '');
  check(!v.ok && /not by the key you recorded/.test(v.text), `policy: a log under another key than the one recorded fails (${v.text})`);
  v = await verify(head.json.public_key, JSON.stringify({ ...saved, root_hash: 'cd'.repeat(32) }));
  check(!v.ok && /rewritten/.test(v.text), `policy: a saved head the log does not extend fails (${v.text})`);
  v = await verify(head.json.public_key, JSON.stringify(saved));
  check(v.ok && /extend the head you saved/.test(v.text) && /the key you recorded/.test(v.text),
    `policy: the log is signed by the recorded key and extends the saved head (${v.text})`);
  check(saved.tree_size > 0 && saved.tree_size < head.json.tree_size, `policy: the saved head is an earlier one (${saved.tree_size} < ${head.json.tree_size})`);
  const shown = await text(page, '#audit-head');
  check(shown.includes(head.json.root_hash) && /verified in this browser/.test(shown), 'policy: the head on screen is the verified one');
  const policyText = await text(page, '#region-policy');
  check(/backed up only to sg/.test(policyText), `policy: the policy in words names the backup region (${policyText})`);
  const residency = await text(page, '#residency');
  check(/US\s+primary\s+3/.test(residency) && /No violations/.test(residency), `policy: the residency report shows 3 US users held as primary (${residency})`);
  const body = await page.evaluate(() => document.body.innerText);
  check(!users.some((u) => body.includes(u)), 'policy: no user id anywhere on the auditor\'s page');
  const entries = await text(page, '#audit-entries');
  check(/p:[0-9a-f]{8}/.test(entries) && /feed\.read/.test(entries), 'policy: the entries show actions and pseudonyms');
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'region-auditor');
  await page.$eval('#audit-bring', (e) => e.scrollIntoView({ block: 'start' }));
  await shot(page, 'audit-verified');
  for (const p of ['/v1/feed?user_id=zed-alpha', '/v1/users/zed-alpha']) {
    const r = await api(us, 'GET', p, { key: keys.auditor, jurisdiction: 'US' });
    check(r.status === 403, `policy: the API refuses the auditor ${p} too (${r.status})`);
  }
  await noStorage(page, 'policy auditor');
  await page.close();

  // A service key: no audit view; a user of another region's jurisdiction gets the 421.
  page = await openConsole(us, 'policy service');
  await page.type('#key', keys.service);
  await page.type('#signin-jurisdiction', 'SG');
  await page.click('#signin-form button[type="submit"]');
  await page.waitForFunction(() => !document.querySelector('#view-explorer').hidden);
  await page.type('#explorer-user', 'sg-user');
  await page.click('#explorer-form button[type="submit"]');
  await page.waitForSelector('#message:not([hidden])');
  const misdirected = await text(page, '#message');
  check(/421/.test(misdirected) && /region sg/.test(misdirected), `policy: a user of SG at us gets the 421, in words (${misdirected})`);
  await shot(page, 'explorer-wrong-region');
  await page.$eval('#jurisdiction', (e) => { e.value = 'US'; e.dispatchEvent(new Event('change')); });
  await page.$eval('#explorer-user', (e) => { e.value = ''; });
  await page.type('#explorer-user', 'zed-alpha');
  await page.click('#explorer-form button[type="submit"]');
  await page.waitForSelector('#feed-current > li.card');
  check(await page.$eval('#message', (e) => e.hidden), 'policy: the message clears once a request succeeds');
  await clickNav(page, 'region');
  await page.waitForFunction(() => document.querySelector('#region-keys').innerText.includes('fingerprint'));
  check(!(await visible(page, '#region-audit')) && !(await visible(page, '#region-residency')),
    'policy: a service key never sees the audit view');
  const backups = await text(page, '#region-backups');
  check(/sg/.test(backups), `policy: the region view shows the backup region and its lag (${backups})`);
  const keysText = await text(page, '#region-keys');
  check(/[0-9a-f]{16}/.test(keysText), 'policy: the region view shows the key fingerprints');
  await shot(page, 'region-service');
  const refused = await api(us, 'GET', '/v1/audit/entries', { key: keys.service });
  check(refused.status === 403, `policy: the API refuses a service key the audit entries too (${refused.status})`);

  // Erasure, confirmed, removes the user from every view.
  await clickNav(page, 'user');
  await page.$eval('#user-id', (e) => { e.value = 'zed-bravo'; });
  await page.click('#user-form button[type="submit"]');
  await page.waitForSelector('#user-profile dt');
  const prof = await text(page, '#user-profile');
  check(/Home jurisdiction\s+US/.test(prof), `policy: the profile shows the home jurisdiction (${prof.replace(/\n/g, ' | ')})`);
  await page.click('#user-erase');
  await page.waitForSelector('#erase-dialog[open]');
  await shot(page, 'user-erase-confirm');
  await page.type('#erase-confirm', 'zed-bravo');
  await page.click('#erase-go');
  await page.waitForFunction(() => document.querySelector('#user-status').innerText.startsWith('Erased zed-bravo'));
  check((await api(us, 'GET', '/v1/users/zed-bravo', { key: keys.service, jurisdiction: 'US' })).status === 404, 'policy: the erased user is gone from the API');
  await page.type('#user-id', 'zed-bravo');
  await page.click('#user-form button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#user-status').innerText.includes('No user zed-bravo'));
  const recent = await page.$$eval('#recent-users option', (os) => os.map((o) => o.value));
  check(!recent.includes('zed-bravo'), `policy: the erased user is gone from the console's user list (${recent})`);
  await noStorage(page, 'policy service');
  // Signing out forgets the key and everything the principal saw.
  await Promise.all([page.waitForNavigation({ waitUntil: 'networkidle0' }), page.click('#signout')]);
  check(await visible(page, '#view-signin'), 'policy: signing out asks for a key again');
  const after = await page.evaluate(() => document.body.innerText + [...document.querySelectorAll('input')].map((i) => i.value).join(' '));
  check(!users.some((u) => after.includes(u)), 'policy: nothing of the last principal\'s users is left on the page');
  await page.close();

  await Promise.all([stopServer(us), stopServer(sg)]);
}

try {
  await openMode();
  await policyMode();
} catch (err) {
  check(false, `unexpected: ${err.stack || err}`);
} finally {
  await browser.close().catch(() => {});
}
console.log(`console test: ${checks - failures.length} of ${checks} checks passed; screenshots in ${SHOTS}`);
process.exit(failures.length ? 1 : 0);
