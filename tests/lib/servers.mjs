// Real `foryou serve` processes for the node tests (tests/contract,
// tests/console): started on loopback at a free port, stopped by PID (and
// killed at exit, whatever happens), and the two-region setup both use.
// Node's own modules only, so it needs no npm package of its own.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const children = [];
process.on('exit', () => { for (const c of children) { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } } });

// Kills `proc` at exit too (a browser, say).
export function track(proc) { children.push(proc); }

export const sha256hex = (s) => createHash('sha256').update(s).digest('hex');

// Starts `FORYOU serve --listen 127.0.0.1:0 ARGS` (stderr to DIR/NAME.err);
// resolves with {proc, name, url, listening} at the first stdout line that
// starts with `until` ("starting on" or "listening on"); `listening`
// resolves once the server is ready.
export function startServer(foryou, dir, name, args, until = 'listening on', timeoutMs = 120000) {
  const errFile = path.join(dir, `${name}.err`);
  const proc = spawn(foryou, ['serve', '--listen', '127.0.0.1:0', '--log-level', 'warn', ...args],
    { stdio: ['ignore', 'pipe', fs.openSync(errFile, 'w')] });
  children.push(proc);
  const server = { proc, name, url: null, listening: null };
  const rl = readline.createInterface({ input: proc.stdout });
  let resolveListening;
  server.listening = new Promise((r) => { resolveListening = r; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no "${until}" within ${timeoutMs} ms`)), timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}): ${fs.readFileSync(errFile, 'utf8').slice(-2000)}`));
    });
    rl.on('line', (line) => {
      const m = line.match(/^(starting on|listening on) (https?:\/\/[^ ]+)/);
      if (!m) return;
      server.url = m[2];
      if (m[1] === 'listening on') resolveListening();
      if (m[1] === until) { clearTimeout(timer); resolve(server); }
    });
  });
}

// SIGTERM, then SIGKILL after 10 s; resolves once the process is gone.
export function stopServer(server) {
  return new Promise((resolve) => {
    if (server.proc.exitCode !== null) return resolve();
    server.proc.removeAllListeners('exit');
    server.proc.on('exit', () => resolve());
    process.kill(server.proc.pid, 'SIGTERM');
    setTimeout(() => { try { process.kill(server.proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 10000);
  });
}

// The keys of the two-region setup's principals.
export const KEYS = { service: 'svc-key', admin: 'admin-key', auditor: 'audit-key', operator: 'ops-key', replication: 'repl-key' };

// Region us (primary for US) backing up to sg (primary for SG, approved to
// hold US backups), under one policy with a principal of each role
// (us-feed-service, us-admin, outside-auditor, us-ops, us-replication; keys
// in KEYS), each region with its own region key, in DIR/us and DIR/sg.
// Resolves with {us, sg}.
export async function startTwoRegions(foryou, dir) {
  fs.writeFileSync(path.join(dir, 'policy.toml'), `
[[regions]]
name = "us"
jurisdiction = "US"
operator = "Trusted Operator Inc."
primary_for = ["US"]

[[regions]]
name = "sg"
jurisdiction = "SG"
operator = "Trusted Operator Inc."
primary_for = ["SG"]
backup_for = ["US"]

[[principals]]
name = "us-feed-service"
key_sha256 = "${sha256hex(KEYS.service)}"
role = "service"
read = ["US"]
write = ["US"]

[[principals]]
name = "us-admin"
key_sha256 = "${sha256hex(KEYS.admin)}"
role = "admin"
read = ["*"]
write = ["*"]

[[principals]]
name = "outside-auditor"
key_sha256 = "${sha256hex(KEYS.auditor)}"
role = "auditor"

[[principals]]
name = "us-ops"
key_sha256 = "${sha256hex(KEYS.operator)}"
role = "operator"

[[principals]]
name = "us-replication"
key_sha256 = "${sha256hex(KEYS.replication)}"
role = "replication"
read = ["US"]
write = ["US"]
region = "us"
`);
  fs.writeFileSync(path.join(dir, 'repl.key'), KEYS.replication);
  for (const r of ['us', 'sg']) {
    fs.writeFileSync(path.join(dir, `${r}.region-key`), spawnSync(foryou, ['keygen']).stdout, { mode: 0o600 });
  }
  const common = (r) => ['--policy', path.join(dir, 'policy.toml'), '--region', r,
    '--region-key-file', path.join(dir, `${r}.region-key`), '--data-dir', path.join(dir, r)];
  const sg = await startServer(foryou, dir, 'sg', common('sg'));
  const us = await startServer(foryou, dir, 'us', [...common('us'), '--backup-to', `sg=${sg.url}`,
    '--backup-api-key-file', path.join(dir, 'repl.key')]);
  return { us, sg };
}
