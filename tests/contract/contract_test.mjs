#!/usr/bin/env node
// Contract test: docs/openapi.yaml is the one description of the API, and
// this proves the real server keeps to it (issue 13).
//
// 1. Lints docs/openapi.yaml with redocly (its recommended rules; no errors,
//    no warnings).
// 2. Starts real `foryou serve` processes on loopback: an open-mode server
//    with the demo world (probed while it is still starting), and two regions
//    under one policy, us backing up to sg.
// 3. Sends real requests, successes and every error class, and checks each
//    answer against the spec: the status is one the operation declares (or
//    one the connection layer may give any request), every header the spec
//    requires is there and matches its schema, X-Request-Id echoes the
//    client's, the Content-Type is the one declared, the body validates
//    against the declared schema (ajv), and a 405's Allow lists exactly the
//    methods the spec declares for the path.
// 4. Every operation of the spec got at least one 2xx (3xx for a redirect), and every error class
//    (400, 401, 403, 404, 405, 409, 413, 421, 503) was seen.
// 5. `promtool check metrics` on /metrics, when promtool is installed.
//
//   FORYOU=build/release/foryou node tests/contract/contract_test.mjs
//
// Needs `npm ci` in tests/contract (scripts/install-deps.sh does it).
// Prints one line per failed check and a coverage table; exits 1 on failure.
// Stops every server it started, by PID.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';
import { KEYS, startServer as startServerIn, startTwoRegions, stopServer } from '../lib/servers.mjs';
import YAML from 'yaml';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const SPEC_FILE = path.join(ROOT, 'docs/openapi.yaml');
const FORYOU = path.resolve(process.env.FORYOU || path.join(ROOT, 'build/release/foryou'));
// Statuses the connection layer may give any request (docs/openapi.yaml, info).
const TRANSPORT_STATUSES = new Set(['400', '413', '431', '501', '503']);

const failures = [];
const fail = (what) => { failures.push(what); console.log(`FAIL ${what}`); };

// ---- the spec ---------------------------------------------------------------

const spec = YAML.parse(fs.readFileSync(SPEC_FILE, 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
// Component schemas become definitions of one schema, "spec"; every $ref
// into components is rewritten to point there.
const rewrite = (node) => {
  if (Array.isArray(node)) return node.map(rewrite);
  if (node && typeof node === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(node)) {
      out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')
        ? `spec#/definitions/${v.slice('#/components/schemas/'.length)}` : rewrite(v);
    }
    return out;
  }
  return node;
};
ajv.addSchema({ $id: 'spec', definitions: rewrite(spec.components.schemas) });
const deref = (obj) => {
  // Follows #/components/... references of parameters, responses, headers.
  while (obj && obj.$ref) {
    obj = obj.$ref.slice(2).split('/').reduce((o, k) => o[k.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
  }
  return obj;
};
const compiled = new Map();
const validatorFor = (schema) => {
  const key = JSON.stringify(schema);
  if (!compiled.has(key)) compiled.set(key, ajv.compile(rewrite(schema)));
  return compiled.get(key);
};

const METHODS = ['get', 'post', 'put', 'delete', 'patch'];
const routes = Object.entries(spec.paths).map(([template, item]) => ({
  template,
  regex: new RegExp('^' + template.replace(/\{[^}]+\}/g, '[^/]+') + '$'),
  item,
  methods: METHODS.filter((m) => item[m]),
}));
const routeOf = (p) => routes.find((r) => r.regex.test(p));

// ---- servers: tests/lib/servers.mjs ----------------------------------------

const startServer = (name, args, until, timeoutMs) => startServerIn(FORYOU, TMP, name, args, until, timeoutMs);

// ---- requests, checked ------------------------------------------------------

const seen = new Map();  // "METHOD template" -> Set of statuses
let requestCounter = 0;

// Sends one request and checks the answer against the spec. `want` is the
// status the test expects (a number), checked too.
async function call(server, method, target, { body, headers = {}, want, note = '', redirect = 'follow' } = {}) {
  const requestId = `ct-${++requestCounter}`;
  const init = { method, headers: { 'X-Request-Id': requestId, ...headers }, redirect };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (!init.headers['Content-Type']) init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(server.url + target, init);
  const buf = Buffer.from(await res.arrayBuffer());
  const label = `${method} ${target}${note ? ` (${note})` : ''} -> ${res.status}`;
  if (want !== undefined && res.status !== want) fail(`${label}: expected ${want}: ${buf.toString().slice(0, 300)}`);
  check(method, target, res.status, res.headers, buf, requestId, label);
  let json;
  try { json = JSON.parse(buf.toString()); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, json, body: buf };
}

function check(method, target, status, headers, buf, requestId, label) {
  const rawPath = target.split('?')[0];
  const route = routeOf(rawPath);
  const s = String(status);
  if (!route) {
    if (status !== 404) fail(`${label}: a path the spec does not have must be 404`);
    checkError(headers, buf, label, 'not_found');
    return;
  }
  const op = route.item[method.toLowerCase()];
  if (!op) {
    if (status !== 405) fail(`${label}: a method the spec does not declare on ${route.template} must be 405`);
    const allow = (headers.get('allow') || '').split(',').map((x) => x.trim().toLowerCase()).filter(Boolean).sort();
    const declared = [...route.methods].sort();
    if (allow.join(',') !== declared.join(',')) {
      fail(`${label}: Allow "${headers.get('allow')}" is not the spec's ${declared.join(', ')}`);
    }
    checkError(headers, buf, label, 'method_not_allowed');
    return;
  }
  const key = `${method} ${route.template}`;
  if (!seen.has(key)) seen.set(key, new Set());
  seen.get(key).add(s);
  let response = op.responses[s];
  if (!response) {
    if (!TRANSPORT_STATUSES.has(s)) {
      fail(`${label}: status ${s} is not declared for ${key} (declared: ${Object.keys(op.responses).join(', ')})`);
      return;
    }
    checkError(headers, buf, label);
    return;
  }
  response = deref(response);
  // Headers: every one the response declares required must be there and
  // match; optional ones are checked when present.
  for (const [name, h0] of Object.entries(response.headers || {})) {
    const h = deref(h0);
    const value = headers.get(name);
    if (value === null) {
      if (h.required) fail(`${label}: header ${name} missing`);
      continue;
    }
    const v = h.schema.type === 'integer' ? Number(value) : value;
    const validate = validatorFor(h.schema);
    if (!validate(v)) fail(`${label}: header ${name}: "${value}": ${ajv.errorsText(validate.errors)}`);
  }
  if (headers.get('x-request-id') !== requestId) {
    fail(`${label}: X-Request-Id "${headers.get('x-request-id')}" does not echo the request's "${requestId}"`);
  }
  const contentType = (headers.get('content-type') || '').split(';')[0].trim();
  const content = response.content || {};
  if (!content[contentType]) {
    fail(`${label}: Content-Type ${contentType} is not declared (${Object.keys(content).join(', ')})`);
    return;
  }
  const schema = content[contentType].schema;
  if (contentType === 'application/json') {
    let doc;
    try { doc = JSON.parse(buf.toString()); } catch (e) { fail(`${label}: body is not JSON: ${e.message}`); return; }
    const validate = validatorFor(schema);
    if (!validate(doc)) fail(`${label}: body does not match the spec: ${ajv.errorsText(validate.errors)}: ${buf.toString().slice(0, 300)}`);
  } else if (schema && schema.type === 'string' && schema.format !== 'binary' && buf.length === 0) {
    fail(`${label}: empty ${contentType} body`);
  }
}

function checkError(headers, buf, label, code) {
  let doc;
  try { doc = JSON.parse(buf.toString()); } catch { fail(`${label}: error body is not JSON`); return; }
  const validate = validatorFor({ $ref: '#/components/schemas/Error' });
  if (!validate(doc)) fail(`${label}: error body does not match the spec: ${ajv.errorsText(validate.errors)}`);
  if (code && doc?.error?.code !== code) fail(`${label}: error code ${doc?.error?.code}, expected ${code}`);
  if (!headers.get('x-request-id')) fail(`${label}: no X-Request-Id`);
}

// A request no client library would send, on a raw socket.
function rawRequest(server, text) {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, () => sock.write(text));
    let data = '';
    sock.on('data', (d) => { data += d; });
    sock.on('end', () => resolve(data));
    sock.on('error', reject);
    sock.setTimeout(10000, () => { sock.destroy(); reject(new Error('raw request timed out')); });
  });
}

// ---- the scenario -----------------------------------------------------------

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'foryou-contract-'));
const video = (id, extra = {}) => ({ id, creator_id: 'mia', duration_ms: 15000, tags: ['cats'], language: 'en', ...extra });

async function openMode() {
  // Probed while starting: the demo world takes seconds to load.
  const s = await startServer('open', ['--data-dir', path.join(TMP, 'open'), '--demo'], 'starting on');
  await call(s, 'GET', '/livez', { want: 200, note: 'starting' });
  const starting = await call(s, 'GET', '/readyz', { note: 'starting' });
  if (s.proc.exitCode === null && starting.status === 503 && starting.json?.status !== 'starting') {
    fail(`/readyz while starting: ${starting.body}`);
  }
  await call(s, 'GET', '/v1/feed?user_id=u14', { note: 'starting' });
  await call(s, 'GET', '/metrics', { note: 'starting' });
  await s.listening;

  await call(s, 'GET', '/livez', { want: 200 });
  await call(s, 'GET', '/readyz', { want: 200 });
  await call(s, 'GET', '/healthz', { want: 200 });
  const metrics = await call(s, 'GET', '/metrics', { want: 200 });

  await call(s, 'POST', '/v1/videos', { body: { videos: [video('cat1'), video('cat2', { embedding: Array(32).fill(0.1) })] }, want: 200 });
  await call(s, 'POST', '/v1/videos', { body: [video('cat3')], want: 200, note: 'array form' });
  await call(s, 'POST', '/v1/videos', { body: { videos: [{ id: 'x', creator_id: 'mia' }] }, want: 400, note: 'no duration' });
  await call(s, 'POST', '/v1/videos', { body: { videos: [video('x', { colour: 'red' })] }, want: 400, note: 'unknown field' });
  await call(s, 'POST', '/v1/videos', { body: '{"videos": [', want: 400, note: 'bad JSON' });
  await call(s, 'POST', '/v1/videos', { body: { videos: Array.from({ length: 10001 }, (_, i) => video(`b${i}`)) }, want: 413, note: 'batch over the limit' });
  await call(s, 'GET', '/v1/videos/cat2', { want: 200 });
  await call(s, 'GET', '/v1/videos/v1305', { want: 200 });
  await call(s, 'GET', '/v1/videos/nope', { want: 404 });

  const ev = (user, vid, type, extra = {}) => ({ user_id: user, video_id: vid, type, ...extra });
  let accepted = 0;  // events through the API: foryou_events_ingested_total
  accepted += (await call(s, 'POST', '/v1/events', { body: { events: [ev('alice', 'cat1', 'play', { watch_ratio: 1.0 }), ev('alice', 'cat1', 'like')] }, want: 200 })).json?.accepted ?? 0;
  accepted += (await call(s, 'POST', '/v1/events', { body: [ev('alice', 'cat3', 'skip')], want: 200, note: 'array form' })).json?.accepted ?? 0;
  await call(s, 'POST', '/v1/events', { body: [ev('alice', 'nope', 'like')], want: 400, note: 'unknown video' });
  await call(s, 'POST', '/v1/events', { body: [ev('alice', 'cat1', 'play')], want: 400, note: 'play without watch time' });
  await call(s, 'POST', '/v1/events', { body: [ev('a/b', 'cat1', 'like')], want: 400, note: 'bad id' });

  await call(s, 'GET', '/v1/feed?user_id=alice&n=5', { want: 200 });
  await call(s, 'GET', '/v1/feed?user_id=u14', { want: 200 });
  await call(s, 'GET', '/v1/feed?user_id=newcomer&n=3&language=en', { want: 200, note: 'cold start' });
  await call(s, 'GET', '/v1/feed', { want: 400, note: 'no user_id' });
  await call(s, 'GET', '/v1/feed?user_id=alice&n=abc', { want: 400, note: 'bad n' });
  await call(s, 'GET', '/v1/feed?user_id=alice&n=1000', { want: 400, note: 'n too large' });
  const explained = await call(s, 'GET', '/v1/feed?user_id=alice&n=3&explain=true', { want: 200, note: 'explained' });
  if (!explained.json?.items?.every((i) => i.creator_id && i.components?.length === 7)) fail(`explain=true: items without creator or components: ${explained.body}`);
  await call(s, 'GET', '/v1/feed?user_id=alice&n=3&explain=yes', { want: 400, note: 'bad explain' });

  // The region and the console (open mode: no policy, no audit log).
  const region = await call(s, 'GET', '/v1/region', { want: 200 });
  if (region.json?.mode !== 'open' || !region.json?.principal?.may?.includes('personal_data')) fail(`open-mode region: ${region.body}`);
  await call(s, 'GET', '/v1/audit/head', { want: 404, note: 'no audit log' });
  await call(s, 'GET', '/v1/residency', { want: 404, note: 'open mode' });
  const moved = await call(s, 'GET', '/console', { want: 308, redirect: 'manual' });
  if (moved.headers.get('location') !== '/console/') fail(`/console redirects to ${moved.headers.get('location')}`);
  await call(s, 'GET', '/console/', { want: 200 });
  await call(s, 'GET', '/console/console.js', { want: 200 });
  await call(s, 'GET', '/console/console.css', { want: 200 });
  await call(s, 'GET', '/console/results/kuairec.json', { want: 200 });
  await call(s, 'GET', '/console/nope.js', { want: 404 });
  await call(s, 'GET', '/console/results/nope.json', { want: 404 });

  await call(s, 'GET', '/v1/users/alice', { want: 200 });
  await call(s, 'GET', '/v1/users/nobody', { want: 404 });
  const exported = await call(s, 'GET', '/v1/users/alice/export', { want: 200 });
  await call(s, 'GET', '/v1/users/nobody/export', { want: 404 });

  // Migration: the export arrives as another user's first events (a new id
  // here, so the export's user_id is dropped), twice (409), and broken (400).
  const { user_id: _, ...body } = exported.json;
  accepted += (await call(s, 'POST', '/v1/users/bob/import', { body, want: 200 })).json?.imported ?? 0;
  await call(s, 'POST', '/v1/users/bob/import', { body, want: 409, note: 'again' });
  await call(s, 'POST', '/v1/users/carol/import', { body: { events: 'no' }, want: 400 });
  await call(s, 'POST', '/v1/users/alice/fence', { want: 200 });
  await call(s, 'POST', '/v1/events', { body: [ev('alice', 'cat2', 'like')], want: 503, note: 'fenced' });
  await call(s, 'DELETE', '/v1/users/alice/fence', { want: 200 });
  await call(s, 'POST', '/v1/users/nobody/fence', { want: 404 });
  await call(s, 'DELETE', '/v1/users/bob', { want: 200 });
  await call(s, 'DELETE', '/v1/users/bob', { want: 404, note: 'again' });

  await call(s, 'PUT', '/v1/feed', { want: 405 });
  await call(s, 'POST', '/v1/users/alice', { body: {}, want: 405 });
  await call(s, 'PATCH', '/v1/videos', { want: 405 });
  await call(s, 'GET', '/v1/nothing-here', { want: 404 });
  await call(s, 'GET', '/v1/backup/us/status', { want: 403, note: 'open mode holds no backups' });
  await call(s, 'POST', '/v1/events', { body: 'x'.repeat(9 << 20), want: 413, note: '9 MiB body' });

  // A request id that is not safe to echo is replaced, not echoed.
  const replaced = await fetch(`${s.url}/livez`, { headers: { 'X-Request-Id': 'has spaces and "quotes"' } });
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(replaced.headers.get('x-request-id') || '')) fail('an unsafe X-Request-Id was echoed');
  // Malformed request line: 400 with the JSON error body.
  const raw = await rawRequest(s, 'GARBAGE\r\n\r\n');
  const rawStatus = raw.split(' ')[1];
  const rawBody = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  if (rawStatus !== '400') fail(`malformed request: status ${rawStatus}`);
  checkError({ get: (n) => (raw.match(new RegExp(`^${n}: (.*)$`, 'mi')) || [])[1] || null }, Buffer.from(rawBody), 'malformed request');

  // A transfer coding other than chunked: 501, the body not read as plain.
  const gz = await rawRequest(s, 'POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nX-Request-Id: ct-gzip\r\n\r\n0\r\n\r\n');
  if (gz.split(' ')[1] !== '501') fail(`Transfer-Encoding gzip: status ${gz.split(' ')[1]}`);
  checkError({ get: (n) => (gz.match(new RegExp(`^${n}: (.*)$`, 'mi')) || [])[1]?.trim() || null },
    Buffer.from(gz.slice(gz.indexOf('\r\n\r\n') + 4)), 'Transfer-Encoding gzip', 'not_implemented');

  promtool(metrics.body.toString(), 'open mode');
  const after = await call(s, 'GET', '/metrics', { want: 200 });
  const text = after.body.toString();
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds',
    'process_start_time_seconds', 'foryou_build_info', 'foryou_http_rejections_total{reason="method_not_allowed"}',
    'foryou_http_rejections_total{reason="no_route"}', 'foryou_http_rejections_total{reason="too_large"}',
    `foryou_events_ingested_total ${accepted}`, 'foryou_ready 1']) {
    if (!text.includes(name)) fail(`/metrics lacks ${name}`);
  }
  promtool(text, 'open mode, after traffic');
  await stopServer(s);
}

async function policyMode() {
  const keys = KEYS;
  const { us, sg } = await startTwoRegions(FORYOU, TMP);
  const as = (key, jurisdiction = 'US') => ({ Authorization: `Bearer ${key}`, ...(jurisdiction ? { 'X-Foryou-Jurisdiction': jurisdiction } : {}) });

  await call(us, 'POST', '/v1/videos', { body: [video('cat1'), video('cat2')], want: 401, note: 'no key' });
  await call(us, 'POST', '/v1/videos', { body: [video('cat1'), video('cat2')], headers: as(keys.auditor, ''), want: 403, note: 'auditor' });
  const upserted = await call(us, 'POST', '/v1/videos', { body: [video('cat1'), video('cat2')], headers: as(keys.operator, ''), want: 200, note: 'operator' });
  if (upserted.headers.get('x-foryou-backup') !== 'confirmed') fail(`a write with a backup region: X-Foryou-Backup ${upserted.headers.get('x-foryou-backup')}`);
  const ev = [{ user_id: 'ann', video_id: 'cat1', type: 'play', watch_ratio: 1.2 }];
  await call(us, 'POST', '/v1/events', { body: ev, want: 401, note: 'no key' });
  await call(us, 'POST', '/v1/events', { body: ev, headers: as(keys.service, ''), want: 400, note: 'no jurisdiction' });
  const misdirected = await call(us, 'POST', '/v1/events', { body: ev, headers: as(keys.service, 'SG'), want: 421, note: 'SG user at us' });
  if (misdirected.json?.error?.home_region !== 'sg') fail(`421 without home_region sg: ${misdirected.body}`);
  await call(us, 'POST', '/v1/events', { body: ev, headers: as(keys.operator), want: 403, note: 'operator' });
  await call(us, 'POST', '/v1/events', { body: ev, headers: as(keys.replication), want: 403, note: 'replication key' });
  await call(us, 'POST', '/v1/events', { body: ev, headers: as(keys.service), want: 200 });
  await call(us, 'GET', '/v1/feed?user_id=ann&n=2', { headers: as(keys.service), want: 200 });
  await call(us, 'GET', '/v1/feed?user_id=ann&n=2', { headers: as(keys.auditor), want: 403, note: 'auditor' });
  await call(us, 'GET', '/v1/users/ann', { headers: as(keys.service), want: 200 });
  await call(us, 'GET', '/v1/users/ann', { headers: as('wrong-key'), want: 401, note: 'unknown key' });

  // The region, its audit log and residency: who may read what.
  await call(us, 'GET', '/v1/region', { want: 401, note: 'no key' });
  await call(us, 'GET', '/v1/region', { headers: as(keys.replication, ''), want: 403, note: 'replication key' });
  const usRegion = await call(us, 'GET', '/v1/region', { headers: as(keys.service, ''), want: 200, note: 'service' });
  if (usRegion.json?.region?.name !== 'us' || usRegion.json?.backups?.[0]?.region !== 'sg') fail(`us region: ${usRegion.body}`);
  await call(us, 'GET', '/v1/audit/head', { headers: as(keys.service, ''), want: 403, note: 'service' });
  const head = await call(us, 'GET', '/v1/audit/head', { headers: as(keys.auditor, ''), want: 200, note: 'auditor' });
  const entries = await call(us, 'GET', '/v1/audit/entries?from=0&limit=5', { headers: as(keys.auditor, ''), want: 200, note: 'auditor' });
  if (entries.json?.entries?.length !== Math.min(5, head.json?.tree_size ?? 0)) fail(`audit entries: ${entries.body.toString().slice(0, 300)}`);
  await call(us, 'GET', '/v1/audit/entries?limit=100000', { headers: as(keys.auditor, ''), want: 400, note: 'limit too large' });
  await call(us, 'GET', '/v1/audit/entries', { headers: as(keys.operator, ''), want: 403, note: 'operator' });
  const residency = await call(us, 'GET', '/v1/residency', { headers: as(keys.admin, ''), want: 200, note: 'admin' });
  if (residency.json?.held?.[0]?.jurisdiction !== 'US') fail(`us residency: ${residency.body}`);
  await call(us, 'GET', '/v1/residency', { headers: as(keys.service, ''), want: 403, note: 'service' });
  await call(sg, 'GET', '/v1/residency', { headers: as(keys.auditor, ''), want: 200, note: 'sg holds us backups' });
  const exported = await call(us, 'GET', '/v1/users/ann/export', { headers: as(keys.service), want: 200 });
  const { user_id: _, ...body } = exported.json;
  await call(us, 'POST', '/v1/users/ann2/import', { body, headers: as(keys.service), want: 403, note: 'service may not import' });
  await call(us, 'POST', '/v1/users/ann2/import', { body, headers: as(keys.admin), want: 200, note: 'admin' });
  await call(us, 'POST', '/v1/users/ann2/fence', { headers: as(keys.service), want: 403, note: 'service may not fence' });
  await call(us, 'POST', '/v1/users/ann2/fence', { headers: as(keys.admin), want: 200 });
  await call(us, 'DELETE', '/v1/users/ann2/fence', { headers: as(keys.admin), want: 200 });
  await call(us, 'DELETE', '/v1/users/ann2', { headers: as(keys.service), want: 200 });
  await call(us, 'GET', '/v1/videos/cat1', { want: 200, note: 'open endpoint' });
  await call(us, 'GET', '/v1/backup/us/status', { headers: as(keys.replication, ''), want: 403, note: 'us holds no backups' });

  // sg holds us's backups: the replication key reads them, no one else.
  await call(sg, 'GET', '/v1/backup/us/status', { headers: as(keys.replication, ''), want: 200 });
  await call(sg, 'GET', '/v1/backup/us/status', { want: 401, note: 'no key' });
  await call(sg, 'GET', '/v1/backup/us/status', { headers: as(keys.service, ''), want: 403, note: 'service key' });
  const batch = await call(sg, 'GET', '/v1/backup/us/records?from=1', { headers: as(keys.replication, ''), want: 200 });
  // What sg holds, shipped again: records it already has are taken as they are.
  await call(sg, 'POST', '/v1/backup/us/records', { body: new Uint8Array(batch.body), headers: { ...as(keys.replication, ''), 'Content-Type': 'application/octet-stream' }, want: 200, note: 'a batch sg holds' });
  await call(sg, 'GET', '/v1/backup/us/records?from=abc', { headers: as(keys.replication, ''), want: 400 });
  await call(sg, 'POST', '/v1/backup/us/records', { body: new Uint8Array([1, 2, 3]), headers: { ...as(keys.replication, ''), 'Content-Type': 'application/octet-stream' }, want: 400, note: 'garbage batch' });
  // The audit log's copy at sg (shipped asynchronously: wait for it).
  for (let i = 0; i < 100; i++) {
    const st = await fetch(`${sg.url}/v1/backup/us/status`, { headers: as(keys.replication, '') }).then((r) => r.json());
    if (st.audit_size > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const auditBatch = await call(sg, 'GET', '/v1/backup/us/audit?from=0', { headers: as(keys.replication, ''), want: 200 });
  await call(sg, 'POST', '/v1/backup/us/audit', { body: new Uint8Array(auditBatch.body), headers: { ...as(keys.replication, ''), 'Content-Type': 'application/octet-stream' }, want: 200, note: 'records sg holds: a resend' });
  await call(sg, 'POST', '/v1/backup/us/audit', { body: new Uint8Array([1, 2, 3]), headers: { ...as(keys.replication, ''), 'Content-Type': 'application/octet-stream' }, want: 400, note: 'garbage audit batch' });
  await call(sg, 'POST', '/v1/backup/us/audit', { body: new Uint8Array([2, 200, 1, 0, 0, 0]), headers: { ...as(keys.replication, ''), 'Content-Type': 'application/octet-stream' }, want: 409, note: 'entries that do not follow' });
  await call(sg, 'GET', '/v1/backup/us/audit?from=-1', { headers: as(keys.replication, ''), want: 400 });
  await call(sg, 'GET', '/v1/backup/us/audit', { headers: as(keys.service, ''), want: 403, note: 'service key' });
  await call(sg, 'GET', '/v1/backup/us/audit', { want: 401, note: 'no key' });
  await call(sg, 'GET', '/v1/backup/eu/status', { headers: as(keys.replication, ''), want: 403, note: 'another region' });
  await call(sg, 'DELETE', '/v1/backup/us/status', { want: 405 });

  const metrics = await call(us, 'GET', '/metrics', { want: 200 });
  const text = metrics.body.toString();
  for (const name of ['foryou_backup_lag_seconds{region="sg"}', 'foryou_audit_appends_total', 'foryou_audit_entries',
    'foryou_http_rejections_total{reason="unauthenticated"}', 'foryou_http_rejections_total{reason="misdirected"}']) {
    if (!text.includes(name)) fail(`/metrics under a policy lacks ${name}`);
  }
  promtool(text, 'policy, us');
  promtool((await call(sg, 'GET', '/metrics', { want: 200 })).body.toString(), 'policy, sg');
  await stopServer(us);
  await stopServer(sg);
}

function promtool(text, where) {
  const found = spawnSync('promtool', ['--version']);
  if (found.error) {
    console.log(`skip promtool check metrics (${where}): promtool is not installed`);
    return;
  }
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text });
  const out = `${r.stdout}${r.stderr}`.trim();
  if (r.status !== 0 || out) fail(`promtool check metrics (${where}): ${out}`);
}

function lint() {
  const bin = path.join(HERE, 'node_modules/.bin/redocly');
  // From docs/, where .redocly.lint-ignore.yaml lists the spec's deliberate
  // exceptions (the console's page is /console/, and /console only redirects).
  const r = spawnSync(bin, ['lint', '--format', 'stylish', SPEC_FILE], { encoding: 'utf8', cwd: path.dirname(SPEC_FILE) });
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0 || /warning/i.test(out.replace(/No configurations were provided.*\n/, ''))) {
    fail(`redocly lint docs/openapi.yaml:\n${out}`);
  } else {
    console.log('ok redocly lint docs/openapi.yaml');
  }
}

function coverage() {
  const rows = [];
  const classes = new Set();
  for (const r of routes) {
    for (const m of r.methods) {
      const key = `${m.toUpperCase()} ${r.template}`;
      const statuses = [...(seen.get(key) || [])].sort();
      statuses.forEach((s) => classes.add(s));
      rows.push(`  ${key.padEnd(40)} ${statuses.join(' ') || '(never called)'}`);
      // A successful call: a 2xx, or the one status an operation that only
      // redirects declares (GET /console).
      const declared = Object.keys(r.item[m].responses);
      const ok = declared.some((s) => s.startsWith('2')) ? (s) => s.startsWith('2') : (s) => s.startsWith('3');
      if (!statuses.some(ok)) fail(`${key}: no successful call`);
    }
  }
  for (const s of ['400', '401', '403', '404', '409', '413', '421', '503']) {
    if (!classes.has(s)) fail(`no request got ${s}`);
  }
  console.log(`statuses seen per operation:\n${rows.join('\n')}`);
}

try {
  lint();
  await openMode();
  await policyMode();
  coverage();
} catch (e) {
  fail(`error: ${e.stack || e}`);
} finally {
}
console.log(`${requestCounter} requests checked against docs/openapi.yaml; ${failures.length} failure(s)`);
if (failures.length === 0) fs.rmSync(TMP, { recursive: true, force: true });
else console.log(`logs kept in ${TMP}`);
process.exit(failures.length === 0 ? 0 : 1);
