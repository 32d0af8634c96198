// The playground's acts. Every request goes to the gateway that served this
// page; nothing is simulated here. No framework: the DOM, fetch, WebCrypto.
'use strict';

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let session = null;

// ---- base64url (RFC 4648 §5), the encoding of a token's three parts ----

function b64urlFromBytes(bytes) {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function b64url(text) {
  return b64urlFromBytes(encoder.encode(text));
}

// Throws on text that is not base64url.
function fromB64url(part) {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw new Error('not base64url');
  const padded = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return decoder.decode(bytes);
}

function decodeToken(token) {
  const parts = token.trim().split('.');
  if (parts.length !== 3) throw new Error('a JWS has three parts; this has ' + parts.length);
  return { header: JSON.parse(fromB64url(parts[0])), claims: JSON.parse(fromB64url(parts[1])), parts };
}

// ---- small DOM helpers (text only: tokens and bodies are never HTML) ----

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setText(id, text) {
  $(id).textContent = text;
}

// ---- requests ----

async function helper(path, body) {
  const response = await fetch('/playground/' + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    cache: 'no-store',
  });
  const json = await response.json();
  if (!response.ok) throw new Error(json.error || 'HTTP ' + response.status);
  return json;
}

function mint(sub, role, ttl) {
  return helper('mint', { sub, role, ttl });
}

// One request to the gateway; what was sent and what came back.
async function send(path, headers) {
  const sent = { method: 'GET', path, headers };
  try {
    const response = await fetch(path, { method: 'GET', headers, cache: 'no-store', credentials: 'omit' });
    const body = await response.text();
    let echo = null;
    try {
      const json = JSON.parse(body);
      // The echo upstream answers with the request it received.
      if (json && typeof json.headers === 'object') echo = json;
    } catch (_) { /* an error body or plain text */ }
    return {
      sent,
      status: response.status,
      statusText: response.statusText,
      challenge: response.headers.get('www-authenticate'),
      timing: response.headers.get('server-timing'),
      body,
      echo,
    };
  } catch (error) {
    return { sent, error: String(error) };
  }
}

function bearer(token) {
  return { Authorization: 'Bearer ' + token };
}

// ---- the exchange panel: request, the gateway's answer, the upstream's view ----

const FIELDS = [
  ['status', 'status'],
  ['challenge', 'WWW-Authenticate'],
  ['timing', 'Server-Timing'],
  ['body', 'body'],
];
const SEEN = [
  ['x-user-id', 'X-User-Id'],
  ['x-role', 'X-Role'],
  ['authorization', 'Authorization'],
];

// Builds the panel's fixed structure once, so results fill it without
// moving anything below.
function panel(container) {
  if (container.dataset.ready) return;
  container.dataset.ready = '1';
  container.setAttribute('aria-live', 'polite');
  const caption = el('p', 'caption', '\u00a0');
  const request = el('div', 'box');
  request.append(el('p', 'label', 'request sent'), el('pre', 'request', '—'));
  const answer = el('div', 'box');
  answer.append(el('p', 'label', 'gateway answered'));
  const dl = el('dl', 'facts');
  for (const [key, name] of FIELDS) {
    const dd = el('dd', 'v-' + key, '—');
    dl.append(el('dt', null, name), dd);
  }
  answer.append(dl);
  const upstream = el('div', 'box');
  upstream.append(el('p', 'label', 'upstream received'));
  const seen = el('dl', 'facts');
  for (const [key, name] of SEEN) {
    seen.append(el('dt', null, name), el('dd', 'u-' + key, '—'));
  }
  upstream.append(seen, el('p', 'u-note small', '\u00a0'));
  const grid = el('div', 'grid');
  grid.append(request, answer, upstream);
  container.append(caption, grid);
}

function show(container, result, caption) {
  panel(container);
  const q = (cls) => container.querySelector('.' + cls);
  q('caption').textContent = caption || '\u00a0';
  // The browser picks HTTP/1.1 or HTTP/2 and adds its own headers; shown are the ones the act set.
  const lines = [result.sent.method + ' ' + result.sent.path, 'Host: ' + location.host];
  for (const [name, value] of Object.entries(result.sent.headers)) lines.push(name + ': ' + value);
  q('request').textContent = lines.join('\n');
  container.dataset.status = result.error ? 'error' : String(result.status);
  if (result.error) {
    q('v-status').textContent = 'request failed: ' + result.error;
    for (const cls of ['v-challenge', 'v-timing', 'v-body']) q(cls).textContent = '—';
  } else {
    const status = q('v-status');
    status.textContent = result.status + ' ' + result.statusText;
    status.className = 'v-status ' + (result.status < 300 ? 'ok' : 'refused');
    q('v-challenge').textContent = result.challenge || '(none)';
    q('v-timing').textContent = result.timing
      ? result.timing + '  (signature check: ' + result.timing.replace(/^.*dur=/, '') + ' ms)'
      : '(none: sent only with a verified, forwarded request)';
    q('v-body').textContent = result.echo ? '(the echo of the request, summarised under "upstream received")' : (result.body.trim() || '(empty)');
  }
  const seen = result.echo && result.echo.headers;
  for (const [key] of SEEN) {
    const dd = q('u-' + key);
    if (!seen) dd.textContent = '—';
    else if (key in seen) dd.textContent = seen[key];
    else dd.textContent = '(absent)';
    dd.dataset.value = seen && key in seen ? seen[key] : '';
  }
  q('u-note').textContent = seen
    ? 'path ' + result.echo.path + '; ' + Object.keys(seen).length + ' headers in all: ' + Object.keys(seen).join(', ')
    : 'The upstream was not called.';
  // Counts results shown, so a test (or a screen reader user) can tell a new one from the last.
  container.dataset.shown = String(Number(container.dataset.shown || 0) + 1);
}

// Runs an act's handler with its buttons marked busy; errors are shown, not thrown.
function on(id, handler) {
  $(id).addEventListener('click', async (event) => {
    const button = event.currentTarget;
    button.setAttribute('aria-busy', 'true');
    try {
      await handler();
    } catch (error) {
      const section = button.closest('section');
      const caption = section && section.querySelector('.caption');
      if (caption) caption.textContent = 'error: ' + error.message;
    } finally {
      button.removeAttribute('aria-busy');
    }
  });
}

// ---- Act 1: no memory ----

on('memory-send', async () => {
  show($('memory-result'), await send('/orders', {}), 'No token: refused at the edge.');
});

// ---- Act 2: the identity card ----

function card() {
  return { user: $('card-user').value, role: $('card-role').value };
}

on('card-public', async () => {
  const { user, role } = card();
  const result = await send('/public/profile', { 'X-User-Id': user, 'X-Role': role });
  show($('card-result'), result, 'A public route: the request passes, the forged identity headers do not.');
});

on('card-with-token', async () => {
  const { user, role } = card();
  const { token } = await mint('42', 'user', 900);
  const result = await send('/orders', Object.assign(bearer(token), { 'X-User-Id': user, 'X-Role': role }));
  show($('card-result'), result, 'The upstream sees the identity from the verified token, not the card.');
});

on('card-none', async () => {
  const { user, role } = card();
  const exp = Math.floor(Date.now() / 1000) + 900;
  const token = b64url(JSON.stringify({ alg: 'none', typ: 'JWT' })) + '.' +
    b64url(JSON.stringify({ sub: user, role, exp })) + '.';
  show($('card-result'), await send('/orders', bearer(token)), 'An unsigned card: refused.');
});

// ---- Act 3: fingerprints ----

const FP_HEADER = b64url(JSON.stringify({ alg: 'HS256', kid: 'demo', typ: 'JWT' }));
let fpPrevious = null;
let fpCurrent = null;
let fpRound = 0;

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function bitsDiffering(a, b) {
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    let x = a[i] ^ b[i];
    while (x) { count += x & 1; x >>= 1; }
  }
  return count;
}

async function hmac(secret, message) {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', key, encoder.encode(message)));
}

function fpSigningInput() {
  return FP_HEADER + '.' + b64url($('fp-message').value);
}

async function fingerprint() {
  const round = ++fpRound;
  const secret = $('fp-secret').value;
  const out = $('fp-hex');
  if (!window.crypto || !crypto.subtle) {
    out.textContent = 'WebCrypto is not available in this browser context.';
    return;
  }
  if (secret === '') {
    out.textContent = 'HMAC needs a key: type one.';
    fpCurrent = null;
    return;
  }
  const mac = await hmac(secret, fpSigningInput());
  if (round !== fpRound) return; // a newer edit already started
  if (fpCurrent && hex(fpCurrent) !== hex(mac)) fpPrevious = fpCurrent;
  fpCurrent = mac;
  out.textContent = '';
  const now = hex(mac);
  const before = fpPrevious ? hex(fpPrevious) : now;
  for (let i = 0; i < now.length; i++) {
    out.append(now[i] === before[i] ? document.createTextNode(now[i]) : el('mark', null, now[i]));
  }
  out.dataset.hex = now;
  const bits = $('fp-bits');
  bits.textContent = '';
  const binary = (bytes) => Array.from(bytes, (b) => b.toString(2).padStart(8, '0')).join('');
  const nowBits = binary(mac);
  const beforeBits = fpPrevious ? binary(fpPrevious) : nowBits;
  let run = '';
  const flush = () => { if (run) bits.append(document.createTextNode(run)); run = ''; };
  for (let i = 0; i < nowBits.length; i++) {
    if (nowBits[i] === beforeBits[i]) {
      run += nowBits[i];
    } else {
      flush();
      bits.append(el('mark', null, nowBits[i]));
    }
  }
  flush();
  $('fp-changed').textContent = fpPrevious
    ? bitsDiffering(fpPrevious, mac) + ' of 256 bits differ from the previous fingerprint.'
    : 'Edit one character to see how many bits change.';
}

$('fp-message').addEventListener('input', fingerprint);
$('fp-secret').addEventListener('input', fingerprint);

on('fp-send', async () => {
  const mac = await hmac($('fp-secret').value, fpSigningInput());
  const token = fpSigningInput() + '.' + b64urlFromBytes(mac);
  const same = $('fp-secret').value === session.secret;
  show($('fp-result'), await send('/orders', bearer(token)),
    same ? 'Signed in this page with the demo key: the gateway computes the same fingerprint.'
      : 'Signed with a key that is not the gateway\'s: its fingerprint differs.');
});

// ---- Act 4: anatomy ----

function colour(token) {
  const out = $('an-colored');
  out.textContent = '';
  const parts = token.split('.');
  const classes = ['part-header', 'part-claims', 'part-signature'];
  parts.forEach((part, i) => {
    if (i > 0) out.append(el('span', 'dot', '.'));
    out.append(el('span', classes[i] || 'part-extra', part));
  });
  if (token === '') out.textContent = '\u00a0';
}

function anatomy() {
  const token = $('an-token').value.trim();
  colour(token);
  const parts = token.split('.');
  const read = (part) => {
    try {
      return JSON.stringify(JSON.parse(fromB64url(part || '')), null, 2);
    } catch (error) {
      return '(not base64url JSON: ' + error.message + ')';
    }
  };
  setText('an-header', token ? read(parts[0]) : '—');
  setText('an-claims', token ? read(parts[1]) : '—');
}

$('an-token').addEventListener('input', anatomy);

on('an-mint', async () => {
  const { token } = await mint($('an-sub').value, $('an-role').value, 900);
  $('an-token').value = token;
  anatomy();
});

on('an-send', async () => {
  const token = $('an-token').value.trim();
  show($('an-result'), await send('/orders?id=7', bearer(token)), 'The token as it stands in the box above.');
});

// ---- Act 5: validation ----

// The claims edited, the header and signature kept: what a forger can do without the key.
function tamper(token, edit) {
  const { claims, parts } = decodeToken(token);
  edit(claims);
  return parts[0] + '.' + b64url(JSON.stringify(claims)) + '.' + parts[2];
}

on('val-tamper', async () => {
  const { token } = await mint('42', 'user', 900);
  const forged = tamper(token, (claims) => { claims.role = 'admin'; });
  show($('val-result'), await send('/admin/reports', bearer(forged)),
    'Role edited to admin after signing: the signature no longer matches.');
});

on('val-expired', async () => {
  const { token } = await mint('42', 'user', -120);
  show($('val-result'), await send('/orders', bearer(token)), 'Signed by the demo key, but exp was 2 minutes ago.');
});

on('val-user', async () => {
  const { token } = await mint('42', 'user', 900);
  show($('val-result'), await send('/admin/reports', bearer(token)), 'A valid token, but not the role this route requires.');
});

on('val-admin', async () => {
  const { token } = await mint('7', 'admin', 900);
  show($('val-result'), await send('/admin/reports', bearer(token)), 'Minted with role admin and signed by the demo key.');
});

// ---- Act 6: lifetime ----

let lifeTimer = null;

on('life-start', async () => {
  if (lifeTimer) clearInterval(lifeTimer);
  const ttl = Math.max(1, Math.min(120, Number($('life-ttl').value) || 10));
  const { token, claims } = await mint('42', 'user', ttl);
  const leeway = session.leeway;
  const tick = async () => {
    const left = claims.exp - Math.floor(Date.now() / 1000);
    const result = await send('/orders', bearer(token));
    let text;
    if (left > 0) text = 'exp in ' + left + ' s';
    else if (-left < leeway) text = 'exp passed ' + -left + ' s ago; within the ' + leeway + ' s leeway';
    else text = 'exp passed ' + -left + ' s ago';
    setText('life-countdown', text + ': gateway says ' + (result.status || result.error));
    show($('life-result'), result, 'The same token, sent again every second.');
    if (result.status === 401 || -left > leeway + 10) {
      clearInterval(lifeTimer);
      lifeTimer = null;
    }
  };
  lifeTimer = setInterval(tick, 1000);
  await tick();
});

let revTokens = null;

on('rev-mint', async () => {
  revTokens = { a: await mint('42', 'user', 900), b: await mint('42', 'user', 900) };
  setText('rev-file', 'A has jti ' + revTokens.a.claims.jti + ', B has jti ' + revTokens.b.claims.jti +
    '\n(the revocation file lists nothing from this round yet)');
});

on('rev-revoke', async () => {
  if (!revTokens) throw new Error('mint A and B first');
  const done = await helper('revoke', { jti: revTokens.a.claims.jti });
  setText('rev-file', '# revoked.toml (config reloaded; entries in force: ' + done.entries + ')\n' + done.file);
});

on('rev-send', async () => {
  if (!revTokens) throw new Error('mint A and B first');
  const [a, b] = await Promise.all([
    send('/orders', bearer(revTokens.a.token)),
    send('/orders', bearer(revTokens.b.token)),
  ]);
  show($('rev-a'), a, 'token A, jti ' + revTokens.a.claims.jti);
  show($('rev-b'), b, 'token B, jti ' + revTokens.b.claims.jti);
});

// ---- Act 7: HTTPS ----

on('tls-connection', async () => {
  const response = await fetch('/playground/connection', { cache: 'no-store' });
  const c = await response.json();
  setText('tls-version', c.tls_version || '?');
  setText('tls-cipher', c.cipher_suite || '?');
  setText('tls-kx', c.key_exchange || '?');
  setText('tls-http', c.http_version);
  setText('tls-cert', c.certificate.subject + ' for ' + c.certificate.names.join(', ') + ', issued by ' + c.certificate.issuer);
  setText('tls-sha', c.certificate.sha256);
});

on('tls-wire', async () => {
  const { token } = await mint('42', 'user', 900);
  const w = await helper('wire', { path: '/orders', token });
  const plain = $('wire-plain');
  plain.textContent = '';
  const [before, ...after] = w.plaintext.split(token);
  plain.append(document.createTextNode(before));
  if (after.length) plain.append(el('mark', null, token), document.createTextNode(after.join(token)));
  const lines = w.records.map((r) => r.type + ', ' + r.length + ' bytes\n  ' + r.header + ' | ' + r.head + (r.length > 48 ? '…' : ''));
  setText('wire-tls', lines.join('\n'));
  setText('wire-verdict', 'The token is ' + (w.token_in_plaintext ? '' : 'not ') + 'readable in the plaintext bytes, and ' +
    (w.token_in_records ? '' : 'not ') + 'anywhere in the ' + w.sent_bytes + ' bytes sent over TLS. The gateway answered ' +
    w.status + '.');
});

// ---- start ----

async function start() {
  for (const id of ['memory-result', 'card-result', 'fp-result', 'an-result', 'val-result', 'life-result', 'rev-a', 'rev-b']) {
    panel($(id));
  }
  const response = await fetch('/playground/session', { cache: 'no-store' });
  session = await response.json();
  setText('demo-secret', session.secret);
  setText('demo-leeway', String(session.leeway));
  $('fp-secret').value = session.secret;
  $('fp-message').value = JSON.stringify({ sub: '42', role: 'user', exp: Math.floor(Date.now() / 1000) + 3600 });
  await fingerprint();
}

start();
