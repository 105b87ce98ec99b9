// Verifies the audit log's signed tree head in the browser: from the
// entries' bytes as hashed (GET /v1/audit/entries, `encoded`), it recomputes
// the RFC 6962 Merkle root with WebCrypto's SHA-256, compares it with the
// head's, and checks the head's Ed25519 signature (docs/FORMATS.md, "Audit
// log"). It also decodes every entry from those bytes and checks that the
// fields the server sent beside them say the same.
//
// On its own that proves the log is consistent under the key the server
// presents: a server could forge a whole log under a new key. What binds it
// is what the auditor brings: the public key recorded out of band
// (`expectedKey`: the log must be signed by it) and a tree head saved earlier
// (`savedHead`, as `foryou audit verify` prints it: today's log must extend
// it, so nothing was removed or rewritten since).
//
// WebCrypto exists only in a secure context (HTTPS, or http://localhost);
// elsewhere verifyAuditLog says so, and `foryou audit verify` does the same
// check from the command line.

export function hexToBytes(hex) {
  if (typeof hex !== 'string' || !/^([0-9a-f]{2})*$/.test(hex)) throw new Error('not lower-case hex');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const buf = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { buf.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
}

// The entry encoding of docs/FORMATS.md: u8 version, varint seq,
// zigzag-varint ts_ms, strings (varint length + bytes).
export function decodeEntry(bytes) {
  let i = 0;
  const varint = () => {
    let v = 0n, shift = 0n;
    for (;;) {
      if (i >= bytes.length) throw new Error('truncated varint');
      const b = bytes[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  };
  const str = () => {
    const n = Number(varint());
    if (i + n > bytes.length) throw new Error('truncated string');
    const s = new TextDecoder().decode(bytes.subarray(i, i + n));
    i += n;
    return s;
  };
  const version = bytes[i++];
  if (version !== 1 && version !== 2) throw new Error(`unknown entry version ${version}`);
  const seq = varint();
  const z = varint();
  const ts = (z >> 1n) ^ -(z & 1n);
  const e = { seq: Number(seq), ts_ms: Number(ts), principal: str(), action: str(), subject: str(), outcome: str(),
    request_id: version === 2 ? str() : '' };
  if (i !== bytes.length) throw new Error('trailing bytes');
  return e;
}

// RFC 6962: MTH of leaves[lo, hi).
async function merkleRoot(leaves, lo, hi) {
  const n = hi - lo;
  if (n === 0) return sha256(new Uint8Array(0));
  if (n === 1) return leaves[lo];
  let k = 1;
  while (k * 2 < n) k *= 2;
  const left = await merkleRoot(leaves, lo, lo + k);
  const right = await merkleRoot(leaves, lo + k, hi);
  return sha256(Uint8Array.of(1), left, right);
}

function sthMessage(size, ts, root) {
  const prefix = new TextEncoder().encode('foryou-sth-v1');
  const m = new Uint8Array(prefix.length + 16 + 32);
  m.set(prefix, 0);
  const view = new DataView(m.buffer);
  view.setBigUint64(prefix.length, BigInt(size));
  view.setBigUint64(prefix.length + 8, BigInt.asUintN(64, BigInt(ts)));
  m.set(root, prefix.length + 16);
  return m;
}

export async function fingerprint(keyHex) {
  return bytesToHex(await sha256(hexToBytes(keyHex))).slice(0, 16);
}

async function ed25519Verify(keyHex, sigHex, message) {
  const key = await crypto.subtle.importKey('raw', hexToBytes(keyHex), { name: 'Ed25519' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'Ed25519' }, key, hexToBytes(sigHex), message);
}

const count = (x) => Number.isSafeInteger(x) && x >= 0;

// fetchPage(from, limit) -> the parsed body of GET /v1/audit/entries.
// onProgress(done, total). Resolves to {ok, message, size, root, head,
// entries (the decoded, verified entries), fingerprint}.
export async function verifyAuditLog(fetchPage, onProgress = () => {}, { expectedKey = '', savedHead = null } = {}) {
  if (!globalThis.crypto || !crypto.subtle) {
    return { ok: false, message: 'this page is not a secure context (HTTPS or localhost), so the browser offers no ' +
      'WebCrypto to verify with: run `foryou audit verify` instead' };
  }
  const page = 5000;
  const first = await fetchPage(0, page);
  const head = { size: first.tree_size, ts: first.timestamp_ms, root: first.root_hash, sig: first.signature,
    key: first.public_key };
  if (!count(head.size) || !Number.isSafeInteger(head.ts)) return { ok: false, message: 'the head\'s size or time is not an integer' };
  const fp = await fingerprint(head.key);
  if (expectedKey && expectedKey.trim().toLowerCase() !== head.key) {
    return { ok: false, message: `the log is signed by key ${fp}, not by the key you recorded (${await fingerprint(expectedKey.trim().toLowerCase()).catch(() => 'not a key')})` };
  }
  if (head.size === 0) return { ok: false, message: 'the log is empty: nothing is signed yet', size: 0 };
  const leaves = [];
  const decoded = [];
  let body = first;
  for (;;) {
    for (const e of body.entries) {
      const bytes = hexToBytes(e.encoded);
      const d = decodeEntry(bytes);
      decoded.push(d);
      if (d.seq !== leaves.length) return { ok: false, message: `entry ${leaves.length} says it is entry ${d.seq}` };
      for (const f of ['principal', 'action', 'subject', 'outcome', 'request_id', 'ts_ms']) {
        if (d[f] !== e[f]) return { ok: false, message: `entry ${d.seq}: the server's ${f} differs from the signed bytes` };
      }
      leaves.push(await sha256(Uint8Array.of(0), bytes));
    }
    onProgress(leaves.length, head.size);
    if (leaves.length >= head.size || body.entries.length === 0) break;
    body = await fetchPage(leaves.length, page);
    if (!count(body.tree_size) || body.tree_size < head.size) return { ok: false, message: 'the log shrank while it was read' };
  }
  if (leaves.length < head.size) return { ok: false, message: `the head covers ${head.size} entries, the log gave ${leaves.length}` };
  leaves.length = head.size;  // entries appended while reading belong to a later head
  decoded.length = head.size;
  const root = await merkleRoot(leaves, 0, leaves.length);
  if (bytesToHex(root) !== head.root) {
    return { ok: false, message: `the ${head.size} entries hash to ${bytesToHex(root).slice(0, 16)}…, not to the head's root ${head.root.slice(0, 16)}…` };
  }
  let valid;
  try {
    valid = await ed25519Verify(head.key, head.sig, sthMessage(head.size, head.ts, root));
  } catch (err) {
    return { ok: false, message: `this browser cannot check Ed25519 signatures (${err.message}): run \`foryou audit verify\`` };
  }
  if (!valid) return { ok: false, message: 'the tree head signature does not verify under the log\'s public key' };
  let extends_ = '';
  if (savedHead) {
    const m = savedHead.tree_size;
    if (!count(m) || !Number.isSafeInteger(savedHead.timestamp_ms) || typeof savedHead.root_hash !== 'string') {
      return { ok: false, message: 'the saved head is not {tree_size, timestamp_ms, root_hash, signature}' };
    }
    if (m > head.size) return { ok: false, message: `the saved head has ${m} entries, the log only ${head.size}: history was removed` };
    const old = await merkleRoot(leaves, 0, m);
    if (bytesToHex(old) !== savedHead.root_hash) {
      return { ok: false, message: `the log's first ${m} entries no longer hash to the saved head's root: history was rewritten` };
    }
    if (m > 0 && !(await ed25519Verify(head.key, savedHead.signature || '', sthMessage(m, savedHead.timestamp_ms, old)).catch(() => false))) {
      return { ok: false, message: 'the saved head\'s signature does not verify under this log\'s key' };
    }
    extends_ = ` and extend the head you saved (${m} entries)`;
  }
  const bound = expectedKey ? `the key you recorded (${fp})` : `the key this server presents (${fp}; paste the key you recorded to bind it)`;
  return { ok: true, size: head.size, root: head.root, head: first, entries: decoded, fingerprint: fp,
    message: `verified: ${head.size} entries hash to root ${head.root.slice(0, 16)}…${extends_}, signed by ${bound}` };
}
