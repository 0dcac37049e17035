// Browser end-to-end tests for the MultiUserChat web client.
//
// Drives Debian's Chromium through playwright-core (no browser download) and
// runs under the Node test runner. Normally started by e2e/run.sh, which
// builds the server, starts it on free loopback ports and passes:
//   E2E_BASE_URL         http://127.0.0.1:<http port>
//   E2E_TCP_PORT         the server's raw TCP (JSON lines) port
//   E2E_SERVER_CMD       shell command that starts the server on those same ports
//   E2E_SERVER_PIDFILE   file holding the PID of the running server
//   E2E_SERVER_LOG       server output (appended to when the server is restarted)
// Optional: E2E_ARTIFACTS (screenshots, DOM and console on failure; default
// ../target/e2e-artifacts), E2E_SCREENSHOTS=always, E2E_CHROMIUM (default
// /usr/bin/chromium), E2E_TIMEOUT_MS (per wait, default 10000), E2E_HEADED=1.
//
// The restart test stops the server by the PID in the pidfile and starts the
// same command again; it writes the new PID back so run.sh can always stop it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, openSync, closeSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const env = process.env;
const HERE = dirname(fileURLToPath(import.meta.url));
const BASE_URL = env.E2E_BASE_URL;
const TCP_PORT = Number(env.E2E_TCP_PORT || 0);
const ARTIFACTS = resolve(env.E2E_ARTIFACTS || join(HERE, '..', 'target', 'e2e-artifacts'));
const SCREENSHOTS = env.E2E_SCREENSHOTS || 'failure';
const CHROMIUM = env.E2E_CHROMIUM || '/usr/bin/chromium';
const STEP = Number(env.E2E_TIMEOUT_MS || 10000);
const TEST_TIMEOUT = 60000;

// Keeps Chromium quiet and self-contained on a headless CI box (running as root).
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// axe-core's browser build. The pages' Content-Security-Policy (script-src 'self')
// refuses an injected inline <script> (page.addScriptTag), so its source is
// evaluated through the DevTools protocol instead, which the policy does not govern.
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
// Violations of these impacts fail a test; the others are only printed.
const AXE_FAILING_IMPACTS = new Set(['serious', 'critical']);

const tid = (id) => `[data-testid="${id}"]`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Server control (for the restart test)

function httpPort() {
  return Number(new URL(BASE_URL).port);
}

function portOpen(port) {
  return new Promise((ok) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); ok(true); });
    s.once('error', () => ok(false));
  });
}

async function waitUntil(what, fn, timeoutMs = STEP) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function healthy() {
  try {
    const res = await fetch(new URL('/healthz', BASE_URL), { signal: AbortSignal.timeout(1000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

function serverPid() {
  const raw = readFileSync(env.E2E_SERVER_PIDFILE, 'utf8').trim();
  return raw ? Number(raw) : 0;
}

let restarted = null; // the server this file started, if any

async function stopServer() {
  const pid = serverPid();
  assert.ok(pid > 0, 'no server PID recorded');
  try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  const ports = [httpPort(), TCP_PORT].filter(Boolean);
  try {
    await waitUntil('the server to close its ports', async () => {
      for (const p of ports) if (await portOpen(p)) return false;
      return true;
    }, 5000);
  } catch {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await waitUntil('the killed server to close its ports', async () => !(await portOpen(httpPort())), 5000);
  }
  if (restarted && restarted.pid === pid) restarted = null;
  writeFileSync(env.E2E_SERVER_PIDFILE, '');
}

async function startServer() {
  const logFd = openSync(env.E2E_SERVER_LOG, 'a');
  const child = spawn('sh', ['-c', `exec ${env.E2E_SERVER_CMD}`], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  restarted = child;
  writeFileSync(env.E2E_SERVER_PIDFILE, `${child.pid}\n`);
  await waitUntil('the restarted server to answer /healthz', async () => {
    if (child.exitCode !== null) throw new Error(`restarted server exited with code ${child.exitCode}`);
    return healthy();
  }, 20000);
}

// Never leave a server this file started running, even if the runner dies.
process.once('exit', () => {
  if (restarted && restarted.exitCode === null) try { process.kill(restarted.pid, 'SIGKILL'); } catch { /* gone */ }
});

// ---------------------------------------------------------------------------
// Raw TCP client (JSON lines)

class TcpClient {
  constructor(name) {
    this.name = name;
    this.messages = [];
    this.waiters = [];
    this.buffer = '';
  }

  static async connect(name) {
    const c = new TcpClient(name);
    await new Promise((ok, fail) => {
      c.sock = net.connect({ host: '127.0.0.1', port: TCP_PORT }, ok);
      c.sock.once('error', fail);
    });
    c.sock.on('error', () => {});
    c.sock.setEncoding('utf8');
    c.sock.on('data', (chunk) => {
      c.buffer += chunk;
      let i;
      while ((i = c.buffer.indexOf('\n')) >= 0) {
        const line = c.buffer.slice(0, i).replace(/\r$/, '');
        c.buffer = c.buffer.slice(i + 1);
        if (!line.trim()) continue;
        try { c.messages.push(JSON.parse(line)); } catch { c.messages.push({ type: '?', raw: line }); }
      }
      c.waiters = c.waiters.filter((w) => !w());
    });
    return c;
  }

  send(obj) {
    this.sock.write(`${JSON.stringify(obj)}\n`);
  }

  /** Resolves with the first message (already received or future) matching `pred`. */
  waitFor(what, pred, timeoutMs = STEP) {
    return new Promise((ok, fail) => {
      const check = () => {
        const m = this.messages.find(pred);
        if (m) { clearTimeout(timer); ok(m); return true; }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        fail(new Error(`tcp ${this.name}: no ${what} within ${timeoutMs} ms; got ${JSON.stringify(this.messages).slice(-1500)}`));
      }, timeoutMs);
      if (!check()) this.waiters.push(check);
    });
  }

  async join() {
    this.send({ type: 'join', sender: this.name });
    return this.waitFor('welcome', (m) => m.type === 'info' && m.user === this.name);
  }

  close() {
    this.sock.destroy();
  }
}

// ---------------------------------------------------------------------------
// Browser sessions

let browser;

function uniqueName(base) {
  return `${base}${Date.now().toString(36).slice(-4)}${Math.floor(Math.random() * 1000)}`;
}

/** A fresh context (own localStorage) with a page on the login screen. */
async function openUser(label, t, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, locale: 'en-US', ...options });
  const page = await context.newPage();
  const s = { label, name: null, context, page, console: [], errors: [], dialogs: [] };
  page.on('console', (m) => s.console.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => s.errors.push(e.message));
  page.on('dialog', async (d) => {
    s.dialogs.push(`${d.type()}: ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  t.sessions.push(s);
  await page.goto(new URL('/', BASE_URL).href);
  await waitForPage(s, 'login');
  return s;
}

/** Waits until the login or room page has finished setting itself up (translated, pre-filled). */
async function waitForPage(s, which) {
  await s.page.locator(`body[data-ready="${which}"]`).waitFor({ state: 'attached', timeout: STEP });
}

/** Logs in; done only when the server lists us (the join round trip finished). */
async function login(s, name) {
  s.name = name;
  await s.page.locator(tid('loginName')).fill(name);
  await s.page.locator(tid('loginSubmit')).click();
  await s.page.locator(tid('messageInput')).waitFor({ timeout: STEP });
  await waitForUser(s, name);
  await waitForStatus(s, 'online');
  return s;
}

async function users(t, ...labels) {
  const out = [];
  for (const label of labels) out.push(await login(await openUser(label, t), uniqueName(label)));
  return out;
}

/** Sends with the Enter key (the product requirement), or the Send button. */
async function send(s, text, { button = false } = {}) {
  const input = s.page.locator(tid('messageInput'));
  await input.fill(text);
  if (button) await s.page.locator(tid('sendButton')).click();
  else await input.press('Enter');
}

/** Log entries containing `text`, optionally of one kind (own, other, system, private-in, private-out). */
function entries(s, text, kind) {
  const sel = kind ? `${tid('message')}[data-kind="${kind}"]` : tid('message');
  return s.page.locator(`${tid('messageLog')} ${sel}`).filter({ hasText: text });
}

async function waitForMessage(s, text, kind) {
  await entries(s, text, kind).first().waitFor({ timeout: STEP });
}

function userEntry(s, name) {
  return s.page.locator(tid('userList')).getByText(name, { exact: true });
}

async function waitForUser(s, name) {
  await userEntry(s, name).first().waitFor({ timeout: STEP });
}

async function waitForUserGone(s, name) {
  await userEntry(s, name).first().waitFor({ state: 'detached', timeout: STEP });
}

async function waitForStatus(s, state) {
  await s.page.locator(`${tid('connectionStatus')}[data-state="${state}"]`).waitFor({ timeout: STEP });
}

function slug(str) {
  return str.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
}

async function capture(testName, sessions, prefix) {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const s of sessions) {
    const base = join(ARTIFACTS, `${prefix}${slug(testName)}-${slug(s.name || s.label)}`);
    try {
      await s.page.screenshot({ path: `${base}.png`, fullPage: true, timeout: 5000 });
      writeFileSync(`${base}.html`, await s.page.content());
    } catch (e) {
      writeFileSync(`${base}.capture-error.txt`, String(e));
    }
    const lines = [
      `url: ${s.page.url()}`,
      ...s.console,
      ...s.errors.map((e) => `[pageerror] ${e}`),
      ...s.dialogs.map((d) => `[dialog] ${d}`),
    ];
    writeFileSync(`${base}.console.txt`, `${lines.join('\n')}\n`);
  }
}

/** Problems every page must be free of: script errors and Content-Security-Policy violations. */
function pageProblems(sessions) {
  const out = [];
  for (const s of sessions) {
    for (const e of s.errors) out.push(`${s.label}: pageerror ${e}`);
    for (const c of s.console) if (/Content Security Policy|Refused to (execute|load|apply|connect)/i.test(c)) out.push(`${s.label}: ${c}`);
  }
  return out;
}

/**
 * Runs axe-core on the whole page as it is now and fails on any violation of
 * impact serious or critical, naming each one's id, impact, help text and the
 * offending nodes. The full result goes to <artifacts>/axe-<label>.json.
 */
async function checkAccessibility(s, label) {
  const { page } = s;
  if (!(await page.evaluate(() => typeof window.axe === 'object' && typeof window.axe.run === 'function'))) {
    await page.evaluate(AXE_SOURCE);
  }
  // Colours measured mid-transition (e.g. just after a colour-scheme switch) would be neither theme's.
  await page.evaluate(() => Promise.all(document.getAnimations()
    .filter((anim) => anim instanceof CSSTransition)
    .map((anim) => anim.finished.catch(() => {}))));
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  writeFileSync(join(ARTIFACTS, `axe-${slug(label)}.json`), `${JSON.stringify({ url: result.url, violations: result.violations }, null, 2)}\n`);
  const describe = (v) => [
    `  ${v.id} [${v.impact}] ${v.help} (${v.helpUrl})`,
    ...v.nodes.map((n) => `      at ${JSON.stringify(n.target)}${n.failureSummary ? `: ${n.failureSummary.replace(/\s*\n\s*/g, ' ')}` : ''}`),
  ].join('\n');
  const failing = result.violations.filter((v) => AXE_FAILING_IMPACTS.has(v.impact));
  const minor = result.violations.filter((v) => !AXE_FAILING_IMPACTS.has(v.impact));
  if (minor.length) console.log(`axe ${label}: ${minor.length} minor/moderate violation(s), not failing:\n${minor.map(describe).join('\n')}`);
  if (failing.length) {
    const report = `axe ${label}: ${failing.length} serious/critical violation(s):\n${failing.map(describe).join('\n')}`;
    console.log(report);
    assert.fail(report);
  }
}

/** Asserts the focused element is `testid` (or matches `selector`) and shows a focus indicator. */
async function assertFocus(s, what, selector) {
  const state = await s.page.evaluate((sel) => {
    const e = document.activeElement;
    const cs = e ? getComputedStyle(e) : null;
    return {
      matches: Boolean(e && e.matches(sel)),
      focused: e ? `${e.tagName.toLowerCase()}${e.dataset.testid ? `[data-testid=${e.dataset.testid}]` : ''}${e.className ? `.${String(e.className).trim().split(/\s+/).join('.')}` : ''}` : 'none',
      focusVisible: Boolean(e && e.matches(':focus-visible')),
      outline: cs && cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0,
      ring: cs && cs.boxShadow !== 'none',
    };
  }, selector);
  assert.ok(state.matches, `focus should be on ${what}, is on ${state.focused}`);
  assert.ok(state.focusVisible && (state.outline || state.ring), `${what} has focus but no visible focus indicator: ${JSON.stringify(state)}`);
}

/**
 * Declares one test: `body(t)` gets `t.sessions` (filled by openUser/users).
 * On failure every open page is captured (screenshot, DOM, console); contexts
 * are always closed; pages must finish without script errors or CSP violations.
 */
function e2e(name, body) {
  test(name, { timeout: TEST_TIMEOUT }, async () => {
    const t = { sessions: [], tcp: [] };
    try {
      await body(t);
      assert.deepEqual(pageProblems(t.sessions), [], 'pages reported errors');
      if (SCREENSHOTS === 'always') await capture(name, t.sessions, '');
    } catch (err) {
      await capture(name, t.sessions, 'FAILED-');
      throw err;
    } finally {
      for (const c of t.tcp) c.close();
      for (const s of t.sessions) await s.context.close().catch(() => {});
    }
  });
}


// ---------------------------------------------------------------------------
// Rooms

/** A room name no other test uses: # and at most 32 of a-z 0-9 _ -. */
function uniqueRoom(base) {
  return `#${base}-${Date.now().toString(36).slice(-5)}${Math.floor(Math.random() * 1000)}`;
}

/** The room shown now. */
async function currentRoom(s) {
  return (await s.page.locator(tid('currentRoom')).textContent()).trim();
}

async function waitForRoom(s, room) {
  await s.page.waitForFunction(
    ([sel, r]) => document.querySelector(sel)?.textContent.trim() === r,
    [tid('currentRoom'), room],
    { timeout: STEP },
  );
}

/** Joins (or creates) `room` with the sidebar's form; done when it is shown and the server lists us in it. */
async function joinRoom(s, room) {
  await s.page.locator(tid('roomInput')).fill(room);
  await s.page.locator(tid('roomInput')).press('Enter');
  await waitForRoom(s, room);
  await waitForUser(s, s.name);
}

/** Shows a room the page is already in, with its button in "Your rooms". */
async function showRoom(s, room) {
  await s.page.locator(`${tid('myRooms')} button[data-room="${room}"]`).click();
  await waitForRoom(s, room);
}

/** The texts of the current room's log, in order; the new-messages marker as "--marker--". */
function logTexts(s) {
  return s.page.evaluate((sel) => [...document.querySelectorAll(`${sel} > li`)].map((li) => (
    li.dataset.testid === 'newMessagesMarker' ? '--marker--' : (li.querySelector('.text')?.textContent ?? '')
  )), tid('messageList'));
}

/** A text-mode (nc-style) TCP user: the first line is the name, then readable lines. */
class TextClient {
  constructor(name) {
    this.name = name;
    this.lines = [];
    this.waiters = [];
    this.buffer = '';
  }

  static async connect(name) {
    const c = new TextClient(name);
    await new Promise((ok, fail) => {
      c.sock = net.connect({ host: '127.0.0.1', port: TCP_PORT }, ok);
      c.sock.once('error', fail);
    });
    c.sock.on('error', () => {});
    c.sock.setEncoding('utf8');
    c.sock.on('data', (chunk) => {
      c.buffer += chunk;
      let i;
      while ((i = c.buffer.indexOf('\n')) >= 0) {
        c.lines.push(c.buffer.slice(0, i).replace(/\r$/, ''));
        c.buffer = c.buffer.slice(i + 1);
      }
      c.waiters = c.waiters.filter((w) => !w());
    });
    c.sock.write(`${name}\n`);
    await c.waitFor('the welcome', (l) => l.includes(`Welcome ${name}`));
    return c;
  }

  say(line) {
    this.sock.write(`${line}\n`);
  }

  waitFor(what, pred, timeoutMs = STEP) {
    return new Promise((ok, fail) => {
      const check = () => {
        const l = this.lines.find(pred);
        if (l !== undefined) { clearTimeout(timer); ok(l); return true; }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        fail(new Error(`text ${this.name}: no ${what} within ${timeoutMs} ms; got ${JSON.stringify(this.lines.slice(-30))}`));
      }, timeoutMs);
      if (!check()) this.waiters.push(check);
    });
  }

  close() {
    this.sock.destroy();
  }
}

/** A JSON-lines TCP user with the rooms feature, in `room`. */
async function tcpInRoom(t, base, room) {
  const c = await TcpClient.connect(uniqueName(base));
  t.tcp.push(c);
  c.send({ type: 'join', sender: c.name, features: ['rooms', 'presence'] });
  await c.waitFor('welcome', (m) => m.type === 'info' && m.user === c.name);
  c.send({ type: 'room_join', room });
  await c.waitFor(`room_joined ${room}`, (m) => m.type === 'room_joined' && m.room === room);
  await c.waitFor(`history of ${room}`, (m) => m.type === 'history' && m.room === room);
  return c;
}

before(async () => {
  assert.ok(BASE_URL, 'E2E_BASE_URL is not set (run e2e/run.sh)');
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: env.E2E_HEADED !== '1',
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  await browser?.close();
  if (restarted && restarted.exitCode === null) {
    const exited = new Promise((r) => restarted.once('exit', r));
    try { process.kill(restarted.pid, 'SIGTERM'); } catch { /* gone */ }
    const kill = setTimeout(() => { try { process.kill(restarted.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    await exited;
    clearTimeout(kill);
    writeFileSync(env.E2E_SERVER_PIDFILE, '');
  }
});

// ---------------------------------------------------------------------------
// Tests

e2e('two browser users chat; own messages on one side, others on the other', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  await waitForUser(a, b.name);
  await waitForUser(b, a.name);

  const hello = `hello from ann ${Date.now()}`;
  await send(a, hello); // Enter key
  await waitForMessage(b, hello, 'other');
  await waitForMessage(a, hello, 'own');
  await a.page.locator(`${tid('message')}[data-kind="own"][data-state="sent"]`).filter({ hasText: hello }).waitFor({ timeout: STEP });

  const reply = `reply from bob ${Date.now()}`;
  await send(b, reply, { button: true });
  await waitForMessage(a, reply, 'other');
  await waitForMessage(b, reply, 'own');

  // Own bubbles sit on the right, others' on the left.
  const own = await entries(a, hello, 'own').locator('.bubble').boundingBox();
  const other = await entries(a, reply, 'other').locator('.bubble').boundingBox();
  const logBox = await a.page.locator(tid('messageLog')).boundingBox();
  assert.ok(own && other && logBox, 'message bubbles are laid out');
  assert.ok(own.x + own.width > logBox.x + logBox.width * 0.8, `own message should hug the right: ${JSON.stringify({ own, logBox })}`);
  assert.ok(other.x < logBox.x + logBox.width * 0.2, `other message should hug the left: ${JSON.stringify({ other, logBox })}`);
  assert.ok(other.x < own.x, 'other message left of own message');

  // Every message shows a local HH:MM:SS time and its sender.
  const time = await entries(a, reply, 'other').locator('time').textContent();
  assert.match(time.trim(), /^\d{2}:\d{2}:\d{2}$/);
  assert.equal((await entries(a, reply, 'other').locator('.who').textContent()).trim(), b.name);
});

e2e('a raw TCP client and browsers see each other and their messages', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  const tcp = await TcpClient.connect(uniqueName('tcp'));
  t.tcp.push(tcp);
  await tcp.join();

  await waitForUser(a, tcp.name);
  await waitForUser(b, tcp.name);

  const fromTcp = `from tcp ${Date.now()}`;
  tcp.send({ type: 'message', sender: tcp.name, message: fromTcp });
  await waitForMessage(a, fromTcp, 'other');
  await waitForMessage(b, fromTcp, 'other');
  assert.equal((await entries(a, fromTcp, 'other').locator('.who').textContent()).trim(), tcp.name);

  const fromBrowser = `from browser ${Date.now()}`;
  await send(a, fromBrowser);
  const got = await tcp.waitFor('the browser message', (m) => m.type === 'message' && m.message === fromBrowser);
  assert.equal(got.sender, a.name);

  // The TCP client leaving is seen in the browsers too.
  tcp.close();
  await waitForUserGone(a, tcp.name);
  await waitForUserGone(b, tcp.name);
});

e2e('a private message reaches only its target and is marked private on both ends', async (t) => {
  const [a, b, c] = await users(t, 'ann', 'bob', 'cid');
  await waitForUser(a, b.name);
  await waitForUser(a, c.name);

  // Clicking a name in the online list starts a private message.
  await userEntry(a, b.name).click();
  const input = a.page.locator(tid('messageInput'));
  assert.equal(await input.inputValue(), `@${b.name} `);
  await a.page.waitForFunction((sel) => document.activeElement === document.querySelector(sel), tid('messageInput'));

  const secret = `secret ${Date.now()}`;
  await input.pressSequentially(secret);
  await input.press('Enter');

  await waitForMessage(b, secret, 'private-in');
  const inTag = await entries(b, secret, 'private-in').locator(tid('privateTag')).textContent();
  assert.ok(inTag.includes(a.name), `receiver's private tag names the sender: ${inTag}`);

  const out = a.page.locator(`${tid('message')}[data-kind="private-out"][data-state="sent"]`).filter({ hasText: secret });
  await out.waitFor({ timeout: STEP });
  const outTag = await out.locator(tid('privateTag')).textContent();
  assert.ok(outTag.includes(b.name), `sender's private tag names the target: ${outTag}`);
  assert.equal(await entries(a, secret, 'own').count(), 0, 'a private message is not shown as public');

  // Prove absence: a public marker sent afterwards reaches the bystander;
  // a leaked private message would have arrived before it.
  const marker = `marker ${Date.now()}`;
  await send(a, marker);
  await waitForMessage(c, marker, 'other');
  await waitForMessage(b, marker, 'other');
  assert.equal(await entries(c, secret).count(), 0, 'bystander must not see the private message');

  // A private message to someone offline is reported, not silently lost.
  const ghost = uniqueName('ghost');
  await send(a, `@${ghost} are you there`);
  await a.page.locator(`${tid('message')}[data-state="failed"]`).filter({ hasText: 'are you there' }).waitFor({ timeout: STEP });
});

e2e('the online list and count follow joins and leaves', async (t) => {
  const [a] = await users(t, 'ann');
  const countOf = async (s) => Number((await s.page.locator(tid('userCount')).textContent()).trim());
  const before = await countOf(a);
  assert.ok(before >= 1);

  const [b] = await users(t, 'bob');
  await waitForUser(a, b.name);
  await a.page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel).textContent) === n, [tid('userCount'), before + 1],
    { timeout: STEP },
  );

  // Leaving with the exit button: back to the login page, name remembered.
  await b.page.locator(tid('exitButton')).click();
  await b.page.waitForURL((u) => !u.pathname.endsWith('/rooms.html'), { timeout: STEP });
  await waitForPage(b, 'login');
  assert.equal(await b.page.locator(tid('loginName')).inputValue(), b.name, 'the name is remembered');
  await waitForUserGone(a, b.name);
  await a.page.waitForFunction(
    ([sel, n]) => Number(document.querySelector(sel).textContent) === n, [tid('userCount'), before],
    { timeout: STEP },
  );

  // Closing the tab: the server notices the dropped connection.
  const [c] = await users(t, 'cid');
  await waitForUser(a, c.name);
  await c.context.close();
  await waitForUserGone(a, c.name);
});

e2e('reloading the room re-joins with the same name; the room without a name leads to login', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  await a.page.reload();
  await waitForPage(a, 'room');
  await waitForStatus(a, 'online');
  await waitForUser(a, a.name);
  assert.equal((await a.page.locator(tid('currentUser')).textContent()).trim(), a.name);
  const text = `after reload ${Date.now()}`;
  await send(a, text);
  await waitForMessage(b, text, 'other');
  await waitForMessage(a, text, 'own');

  // Someone with no remembered name who opens rooms.html is sent to the login page.
  const c = await openUser('cid', t);
  await c.page.goto(new URL('/rooms.html', BASE_URL).href);
  await waitForPage(c, 'login');
});

e2e('message text is shown literally and never run as HTML', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  const tag = `probe${Date.now()}`;
  const payload = `${tag} <img src=x onerror=alert(1)> <b>bold</b>`;
  await send(a, payload);
  await waitForMessage(b, tag, 'other');
  await waitForMessage(a, tag, 'own');
  // Private path too: a different renderer branch.
  await send(a, `@${b.name} ${payload}`);
  await waitForMessage(b, tag, 'private-in');

  for (const s of [a, b]) {
    const log = s.page.locator(tid('messageLog'));
    await sleep(200); // give an injected <img> time to fail and run its onerror
    const report = {
      who: s.label,
      injectedImgs: await log.locator('img').count(),
      injectedBold: await log.locator('b').count(),
      dialogs: s.dialogs,
      literalShown: (await log.innerText()).includes('<img src=x onerror=alert(1)> <b>bold</b>'),
    };
    writeFileSync(join(ARTIFACTS, `html-injection-probe-${s.label}.json`), `${JSON.stringify(report, null, 2)}\n`);
    assert.deepEqual(report.dialogs, [], `script in a message ran: ${JSON.stringify(report)}`);
    assert.equal(report.injectedImgs, 0, `markup became elements: ${JSON.stringify(report)}`);
    assert.equal(report.injectedBold, 0, `markup became elements: ${JSON.stringify(report)}`);
    assert.ok(report.literalShown, `text not shown literally: ${JSON.stringify(report)}`);
  }
});

e2e('a taken or invalid name is refused with a visible error; another name works without reload', async (t) => {
  const [a] = await users(t, 'ann');
  const b = await openUser('bob', t);
  const page = b.page;
  await page.evaluate(() => { window.__noReload = 'still here'; });
  const error = page.locator(tid('loginError'));

  // Exactly the same name.
  await page.locator(tid('loginName')).fill(a.name);
  await page.locator(tid('loginSubmit')).click();
  await error.waitFor({ state: 'visible', timeout: STEP });
  assert.match(await error.innerText(), /in use|taken/i);
  assert.equal(await page.locator(tid('messageInput')).count(), 0, 'still on the login page');

  // Names are unique ignoring case.
  await page.locator(tid('loginName')).fill(a.name.toUpperCase());
  await error.waitFor({ state: 'hidden', timeout: STEP }); // typing clears the old error
  await page.locator(tid('loginSubmit')).click();
  await error.waitFor({ state: 'visible', timeout: STEP });
  assert.match(await error.innerText(), /in use|taken/i);

  // The reserved name: the server refuses it (as invalid or as taken).
  await page.locator(tid('loginName')).fill('Server');
  await page.locator(tid('loginSubmit')).click();
  await error.waitFor({ state: 'visible', timeout: STEP });
  assert.equal(await page.locator(tid('messageInput')).count(), 0, 'Server is not accepted');

  // Rules checked before asking the server.
  await page.locator(tid('loginName')).fill('two words');
  await page.locator(tid('loginSubmit')).click();
  await error.waitFor({ state: 'visible', timeout: STEP });
  assert.match(await error.innerText(), /spaces/i);

  // Another name works, on the same page.
  await login(b, uniqueName('bob'));
  assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'the page was not reloaded');
  await waitForUser(a, b.name);
  assert.match(page.url(), /\/rooms\.html/);
});

e2e('phone-sized screen: no sideways scrolling, the online list collapses', async (t) => {
  const s = await openUser('phone', t, { viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
  const fits = () => s.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
  assert.ok(await fits(), 'login page fits the screen');
  await s.page.locator(tid('loginName')).fill(uniqueName('phone'));
  s.name = await s.page.locator(tid('loginName')).inputValue();
  await s.page.locator(tid('loginSubmit')).click();
  await waitForStatus(s, 'online');
  assert.ok(await fits(), 'room fits the screen');

  const list = s.page.locator(tid('userList'));
  assert.equal(await list.isVisible(), false, 'the online list starts collapsed');
  await s.page.locator(tid('userListToggle')).click();
  await waitForUser(s, s.name);
  assert.ok(await s.page.locator(tid('messageInput')).isVisible());
  await s.page.locator(tid('userListToggle')).click();
  await list.waitFor({ state: 'hidden', timeout: STEP });
});

e2e('unread count shows in the tab title while the tab is hidden', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  const title = await a.page.title();
  // Headless tabs are always visible: emulate the Page Visibility API.
  const setHidden = (hidden) => a.page.evaluate((h) => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
  await setHidden(true);
  await send(b, `one ${Date.now()}`);
  await send(b, `two ${Date.now()}`);
  await a.page.waitForFunction((t0) => document.title === `(2) ${t0}`, title, { timeout: STEP });
  await setHidden(false);
  await a.page.waitForFunction((t0) => document.title === t0, title, { timeout: STEP });
});

e2e('Vietnamese UI for a vi-VN browser, and the language switch works and is remembered', async (t) => {
  const s = await openUser('viet', t, { locale: 'vi-VN' });
  const page = s.page;
  assert.equal(await page.getAttribute('html', 'lang'), 'vi');
  assert.equal((await page.locator(tid('loginSubmit')).innerText()).trim(), 'Vào phòng');
  assert.match(await page.locator(tid('nameRules')).innerText(), /32 ký tự/);

  await page.locator(tid('langSwitch')).selectOption('en');
  assert.equal((await page.locator(tid('loginSubmit')).innerText()).trim(), 'Join');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await page.reload();
  await waitForPage(s, 'login');
  assert.equal((await page.locator(tid('loginSubmit')).innerText()).trim(), 'Join', 'the choice is remembered');

  await page.locator(tid('langSwitch')).selectOption('vi');
  await login(s, uniqueName('viet'));
  assert.equal((await page.locator(tid('exitButton')).innerText()).trim(), 'Rời phòng');
  assert.equal((await page.locator(tid('connectionStatusText')).innerText()).trim(), 'Đã kết nối');
  assert.equal(await page.locator(tid('messageInput')).getAttribute('placeholder'), 'Nhắn cho mọi người, hoặc @tên để nhắn riêng');

  await page.locator(tid('langSwitch')).selectOption('en');
  assert.equal((await page.locator(tid('exitButton')).innerText()).trim(), 'Leave');
  assert.equal((await page.locator(tid('connectionStatusText')).innerText()).trim(), 'Connected');
});

e2e('accessibility: the login page has no serious or critical axe violations (light, dark, with an error, Vietnamese)', async (t) => {
  const s = await openUser('axe', t);
  const { page } = s;
  await checkAccessibility(s, 'login light');
  await page.emulateMedia({ colorScheme: 'dark' });
  await checkAccessibility(s, 'login dark');

  await page.locator(tid('loginName')).fill('two words');
  await page.locator(tid('loginSubmit')).click();
  await page.locator(tid('loginError')).waitFor({ state: 'visible', timeout: STEP });
  await checkAccessibility(s, 'login dark with an error');
  await page.emulateMedia({ colorScheme: 'light' });
  await checkAccessibility(s, 'login light with an error');

  await page.locator(tid('langSwitch')).selectOption('vi');
  assert.equal(await page.getAttribute('html', 'lang'), 'vi');
  await checkAccessibility(s, 'login light vi');
});

e2e('accessibility: the chat page with messages and the online list has no serious or critical axe violations (light, dark, Vietnamese)', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  await waitForUser(a, b.name);
  await waitForUser(b, a.name);

  // One entry of every kind: own, other, private both ways, a failed delivery, server notices.
  const stamp = Date.now();
  await send(a, `public from ann ${stamp}`);
  await send(b, `public from bob ${stamp}`);
  await send(b, `@${a.name} private to ann ${stamp}`);
  await send(a, `@${b.name} private to bob ${stamp}`);
  await send(a, `@${uniqueName('ghost')} to nobody ${stamp}`);
  await waitForMessage(a, `public from bob ${stamp}`, 'other');
  await waitForMessage(a, `private to ann ${stamp}`, 'private-in');
  await a.page.locator(`${tid('message')}[data-state="failed"]`).filter({ hasText: `to nobody ${stamp}` }).waitFor({ timeout: STEP });
  // Answers come in order: after the failure nothing of ann's is still on its way.
  assert.equal(await a.page.locator(`${tid('message')}[data-state="sending"], ${tid('message')}[data-state="queued"]`).count(), 0);
  assert.ok(await a.page.locator(tid('userList')).isVisible(), 'the online list is shown');

  await checkAccessibility(a, 'chat light');
  await a.page.emulateMedia({ colorScheme: 'dark' });
  await checkAccessibility(a, 'chat dark');
  await a.page.locator(tid('langSwitch')).selectOption('vi');
  assert.equal((await a.page.locator(tid('exitButton')).innerText()).trim(), 'Rời phòng');
  await checkAccessibility(a, 'chat dark vi');
  await a.page.emulateMedia({ colorScheme: 'light' });
  await checkAccessibility(a, 'chat light vi');
  // The receiving side too (incoming private message, others' names as buttons).
  await checkAccessibility(b, 'chat light, other user');
});

e2e('accessibility: on a phone the chat page and its open online list pass axe; the keyboard opens the list and Escape closes it', async (t) => {
  const s = await openUser('phone', t, { viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
  const { page } = s;
  await checkAccessibility(s, 'phone login');
  s.name = uniqueName('phone');
  await page.locator(tid('loginName')).fill(s.name);
  await page.locator(tid('loginName')).press('Enter');
  await waitForStatus(s, 'online');
  const text = `from a phone ${Date.now()}`;
  await send(s, text);
  await page.locator(`${tid('message')}[data-state="sent"]`).filter({ hasText: text }).waitFor({ timeout: STEP });
  await checkAccessibility(s, 'phone chat');

  // Back from the message field: log, Leave, language, then the list toggle.
  await assertFocus(s, 'the message field', tid('messageInput'));
  for (let i = 0; i < 4; i++) await page.keyboard.press('Shift+Tab');
  await assertFocus(s, 'the online list toggle', tid('userListToggle'));
  assert.equal(await page.locator(tid('userListToggle')).getAttribute('aria-expanded'), 'false');
  await page.keyboard.press('Enter');
  await waitForUser(s, s.name);
  assert.equal(await page.locator(tid('userListToggle')).getAttribute('aria-expanded'), 'true');
  await checkAccessibility(s, 'phone chat with the online list open');

  await page.keyboard.press('Escape');
  await page.locator(tid('userList')).waitFor({ state: 'hidden', timeout: STEP });
  assert.equal(await page.locator(tid('userListToggle')).getAttribute('aria-expanded'), 'false');
  await assertFocus(s, 'the online list toggle', tid('userListToggle'));
});

e2e('keyboard only: Enter joins, sends and starts a private message; focus order and visible focus on both pages', async (t) => {
  const [b] = await users(t, 'bob');
  const s = await openUser('kim', t);
  const { page } = s;
  const key = (k) => page.keyboard.press(k);

  // Login page: the name field has focus; then Join, then the language switch.
  await assertFocus(s, 'the name field', tid('loginName'));
  await key('Tab');
  await assertFocus(s, 'the Join button', tid('loginSubmit'));
  await key('Tab');
  await assertFocus(s, 'the language switch', tid('langSwitch'));
  await key('Shift+Tab');
  await key('Shift+Tab');
  await assertFocus(s, 'the name field', tid('loginName'));
  s.name = uniqueName('kim');
  await page.keyboard.type(s.name);
  await key('Enter');
  await waitForStatus(s, 'online');
  await waitForUser(s, s.name);
  await waitForUser(s, b.name);

  // Chat page: the message field has focus; Enter sends and keeps it there.
  await assertFocus(s, 'the message field', tid('messageInput'));
  const hello = `sent with Enter ${Date.now()}`;
  await page.keyboard.type(hello);
  await key('Enter');
  await waitForMessage(b, hello, 'other');
  assert.equal(await page.locator(tid('messageInput')).inputValue(), '', 'the field is cleared');
  await assertFocus(s, 'the message field after sending', tid('messageInput'));
  const fromBob = `from bob ${Date.now()}`;
  await send(b, fromBob);
  await waitForMessage(s, fromBob, 'other');

  // Forward: Send, then the others in the online list (not oneself).
  await key('Tab');
  await assertFocus(s, 'the Send button', tid('sendButton'));
  await key('Tab');
  await assertFocus(s, `${b.name} in the online list`, `${tid('userList')} button[data-name="${b.name}"]`);
  // Enter on a name starts a private message to them.
  await key('Enter');
  await assertFocus(s, 'the message field', tid('messageInput'));
  assert.equal(await page.locator(tid('messageInput')).inputValue(), `@${b.name} `);
  const secret = `private by keyboard ${Date.now()}`;
  await page.keyboard.type(secret);
  await key('Enter');
  await waitForMessage(b, secret, 'private-in');

  // Backward: the log (a Tab stop of its own so it can be scrolled; senders'
  // names inside it are not), then the top bar right to left.
  await key('Shift+Tab');
  await assertFocus(s, 'the message log', tid('messageLog'));
  await key('Shift+Tab');
  await assertFocus(s, 'the Leave button', tid('exitButton'));
  await key('Shift+Tab');
  await assertFocus(s, 'the language switch', tid('langSwitch'));
  await key('Shift+Tab');
  await assertFocus(s, 'the online list toggle', tid('userListToggle'));

  // Leaving by keyboard lands in the login page's name field.
  await key('Tab');
  await key('Tab');
  await assertFocus(s, 'the Leave button', tid('exitButton'));
  await key('Enter');
  await page.waitForURL((u) => !u.pathname.endsWith('/rooms.html'), { timeout: STEP });
  await waitForPage(s, 'login');
  await assertFocus(s, 'the name field', tid('loginName'));
  await waitForUserGone(b, s.name);
});


e2e('rooms: two users in two rooms are isolated; unread counts, topics, the room list and leaving', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  const r1 = uniqueRoom('iso-a');
  const r2 = uniqueRoom('iso-b');
  assert.equal(await currentRoom(a), '#lobby', 'everyone starts in the lobby');
  await joinRoom(a, r1);
  await joinRoom(b, r2);
  assert.match(a.page.url(), new RegExp(`[?&]room=${encodeURIComponent(r1)}(&|$)`), 'the current room is in the address');

  // Each room's online list holds only its members.
  await waitForUser(a, a.name);
  assert.equal(await userEntry(a, b.name).count(), 0, `${b.name} is not in ${r1}`);
  assert.equal((await a.page.locator(tid('usersRoom')).textContent()).trim(), r1);

  const inR1 = `only in ${r1} ${Date.now()}`;
  const inR2 = `only in ${r2} ${Date.now()}`;
  await send(a, inR1);
  await send(b, inR2);
  await a.page.locator(`${tid('message')}[data-kind="own"][data-state="sent"]`).filter({ hasText: inR1 }).waitFor({ timeout: STEP });
  await b.page.locator(`${tid('message')}[data-kind="own"][data-state="sent"]`).filter({ hasText: inR2 }).waitFor({ timeout: STEP });

  // A lobby line while ann looks at her room: an unread count on the lobby.
  const lobbyLine = `lobby while away ${Date.now()}`;
  await showRoom(b, '#lobby');
  await send(b, lobbyLine);
  const lobbyButton = a.page.locator(`${tid('myRooms')} button[data-room="#lobby"]`);
  await lobbyButton.locator(tid('unreadCount')).filter({ hasText: '1' }).waitFor({ timeout: STEP });
  assert.match(await lobbyButton.innerText(), /1/);
  assert.match(await lobbyButton.textContent(), /1 unread/, 'the count is spoken as unread');
  assert.match(await a.page.locator(tid('otherUnread')).innerText(), /1 unread in other rooms/);
  assert.equal(await entries(a, lobbyLine).count(), 0, 'another room\'s line is not in the shown log');
  await lobbyButton.click();
  await waitForRoom(a, '#lobby');
  await waitForMessage(a, lobbyLine, 'other');
  assert.equal(await lobbyButton.locator(tid('unreadCount')).count(), 0, 'shown: no longer unread');
  assert.ok(await a.page.locator(tid('otherUnread')).isHidden());
  // The lobby line was the proof of order: had either room line leaked, it would be here by now.
  assert.equal(await entries(a, inR2).count(), 0, `${r2}'s line is not in ann's lobby`);
  await showRoom(a, r1);
  assert.equal(await entries(a, inR2).count(), 0, `${r2}'s line is not in ${r1}`);
  assert.equal(await entries(a, lobbyLine).count(), 0, `the lobby line is not in ${r1}`);
  await showRoom(b, r2);
  assert.equal(await entries(b, inR1).count(), 0, `${r1}'s line is not in ${r2}`);

  // The topic: set in the sidebar, shown in the header and to the room, listed.
  assert.match(await a.page.locator(tid('roomTopic')).innerText(), /no topic/i);
  const topic = `fractions <b>today</b> ${Date.now()}`;
  await a.page.locator(tid('topicInput')).fill(topic);
  await a.page.locator(tid('topicInput')).press('Enter');
  await a.page.locator(tid('roomTopic')).filter({ hasText: topic }).waitFor({ timeout: STEP });
  await waitForMessage(a, `${a.name} set the topic: ${topic}`, 'system');
  assert.equal(await a.page.locator(`${tid('messageLog')} b`).count(), 0, 'a topic is text, never markup');
  // Too long for the server's 390 bytes: refused before sending.
  await a.page.locator(tid('topicInput')).fill('ẞ'.repeat(140));
  await a.page.locator(tid('topicButton')).click();
  await a.page.locator(tid('topicError')).filter({ hasText: /390 bytes/ }).waitFor({ timeout: STEP });
  assert.equal(await a.page.locator(tid('topicInput')).getAttribute('aria-invalid'), 'true');

  await a.page.locator(tid('roomListRefresh')).click();
  const listed = a.page.locator(`${tid('roomList')} button[data-room="${r1}"]`);
  await listed.filter({ hasText: topic }).waitFor({ timeout: STEP });
  assert.match(await listed.innerText(), /1 online/);
  assert.match(await listed.innerText(), /joined/);
  // bob joins ann's room from the list.
  await b.page.locator(tid('roomListRefresh')).click();
  await b.page.locator(`${tid('roomList')} button[data-room="${r1}"]`).filter({ hasText: topic }).click();
  await waitForRoom(b, r1);
  assert.equal((await b.page.locator(tid('roomTopic')).textContent()).trim(), topic, 'a newcomer sees the topic');
  await waitForUser(a, b.name);

  // Names are checked before asking the server.
  for (const bad of ['#two words', '#toán', `#${'x'.repeat(33)}`]) {
    await a.page.locator(tid('roomInput')).fill(bad);
    await a.page.locator(tid('roomJoinButton')).click();
    await a.page.locator(tid('roomError')).filter({ hasText: /a–z, 0–9/ }).waitFor({ timeout: STEP });
    assert.equal(await a.page.locator(tid('roomInput')).getAttribute('aria-invalid'), 'true', bad);
    assert.equal(await currentRoom(a), r1, `${bad} was not joined`);
  }
  await a.page.locator(tid('roomInput')).fill('');
  await a.page.locator(tid('roomError')).waitFor({ state: 'hidden', timeout: STEP });

  // Leaving: the room goes from the list, the lobby is shown, the others see it.
  await a.page.locator(`${tid('myRooms')} button[data-leave="${r1}"]`).click();
  await waitForRoom(a, '#lobby');
  await waitForMessage(a, `You left ${r1}.`, 'system');
  assert.equal(await a.page.locator(`${tid('myRooms')} button[data-room="${r1}"]`).count(), 0);
  assert.doesNotMatch(a.page.url(), /room=/, 'the lobby needs no room in the address');
  await waitForUserGone(b, a.name);
});

e2e('rooms: a late joiner gets the history with a new-messages marker; a reload returns to the room', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  const room = uniqueRoom('hist');
  await joinRoom(a, room);
  const stamp = Date.now();
  const early = [1, 2, 3].map((i) => `early ${i} ${stamp}`);
  for (const line of early) await send(a, line);
  await a.page.locator(`${tid('message')}[data-kind="own"][data-state="sent"]`).filter({ hasText: early[2] }).waitFor({ timeout: STEP });

  await joinRoom(b, room);
  await waitForMessage(b, early[2], 'other');
  const marker = b.page.locator(tid('newMessagesMarker'));
  await marker.waitFor({ timeout: STEP });
  assert.equal((await marker.innerText()).trim(), 'New messages');
  const live = `live ${stamp}`;
  await send(a, live);
  await waitForMessage(b, live, 'other');
  const seen = (await logTexts(b)).filter((x) => x.endsWith(String(stamp)) || x === '--marker--');
  assert.deepEqual(seen, [...early, '--marker--', live], 'history, then the marker, then live lines');
  // History entries show when they were sent, like live ones.
  assert.match((await entries(b, early[0], 'other').locator('time').textContent()).trim(), /^\d{2}:\d{2}:\d{2}$/);

  // Reload: back in the same room, with its history once.
  assert.match(b.page.url(), new RegExp(`room=${encodeURIComponent(room)}`));
  await b.page.reload();
  await waitForPage(b, 'room');
  await waitForStatus(b, 'online');
  await waitForRoom(b, room);
  await waitForMessage(b, live, 'other');
  const again = (await logTexts(b)).filter((x) => x.endsWith(String(stamp)));
  assert.deepEqual(again, [...early, live], 'each line once after the reload');
  assert.ok(await b.page.locator(`${tid('myRooms')} button[data-room="#lobby"]`).isVisible(), 'the lobby is still joined');
  const after = `after reload ${stamp}`;
  await send(b, after);
  await waitForMessage(a, after, 'other');

  // Vietnamese: the marker and the sidebar speak it too, also in a room
  // that was not shown when the language changed.
  await showRoom(b, '#lobby');
  await b.page.locator(tid('langSwitch')).selectOption('vi');
  await showRoom(b, room);
  assert.equal((await b.page.locator(tid('newMessagesMarker')).innerText()).trim(), 'Tin nhắn mới');
  assert.equal((await b.page.locator('label[for="room-input"]').innerText()).trim(), 'Vào hoặc tạo phòng');
  assert.equal((await b.page.locator(tid('topicLabel')).innerText()).trim(), `Chủ đề của ${room}`);
});

e2e('rooms: a TCP JSON user, a text-mode user and a browser in one room see each other', async (t) => {
  const [a] = await users(t, 'ann');
  const room = uniqueRoom('mix');
  await joinRoom(a, room);
  const json = await tcpInRoom(t, 'json', room);
  const text = await TextClient.connect(uniqueName('nc'));
  t.tcp.push(text);
  text.say(`/join ${room}`);
  await text.waitFor(`being in ${room}`, (l) => l.includes(`You are in ${room}`));

  await waitForUser(a, json.name);
  await waitForUser(a, text.name);

  const fromJson = `from json ${Date.now()}`;
  json.send({ type: 'message', room, message: fromJson });
  await waitForMessage(a, fromJson, 'other');
  await text.waitFor('the JSON line', (l) => l.endsWith(`${json.name}: ${fromJson}`) && l.startsWith(`[${room} `));

  const fromText = `from nc ${Date.now()}`;
  text.say(fromText);
  await waitForMessage(a, fromText, 'other');
  const got = await json.waitFor('the text line', (m) => m.type === 'message' && m.message === fromText);
  assert.equal(got.room, room);
  assert.equal(got.sender, text.name);

  const fromBrowser = `from the browser ${Date.now()}`;
  await send(a, fromBrowser);
  const m = await json.waitFor('the browser line', (x) => x.type === 'message' && x.message === fromBrowser);
  assert.equal(m.room, room);
  assert.equal(m.sender, a.name);
  assert.ok(Number.isInteger(m.seq) && m.seq >= 3, `a room line carries its seq: ${JSON.stringify(m)}`);
  const line = await text.waitFor('the browser line', (l) => l.endsWith(`${a.name}: ${fromBrowser}`));
  assert.match(line, new RegExp(`^\\[${room} \\d{2}:\\d{2}:\\d{2}\\] `));
  // The lobby did not get the room's lines.
  await showRoom(a, '#lobby');
  assert.equal(await entries(a, fromJson).count(), 0);
  assert.equal(await entries(a, fromText).count(), 0);
});

e2e('rooms: after a dropped connection each room resumes with since: missed lines once, nothing twice', async (t) => {
  const s = await openUser('ann', t);
  // Every WebSocket of this page goes through a route the test can cut.
  let blocked = false;
  const links = [];
  await s.context.routeWebSocket(/\/ws$/, (ws) => {
    if (blocked) {
      ws.close({ code: 4000, reason: 'network down' });
      return;
    }
    links.push({ ws, server: ws.connectToServer() });
  });
  await login(s, uniqueName('ann'));
  const room = uniqueRoom('resume');
  await joinRoom(s, room);
  const bob = await tcpInRoom(t, 'bob', room);
  const stamp = Date.now();
  bob.send({ type: 'message', room, message: `before ${stamp}` });
  await waitForMessage(s, `before ${stamp}`, 'other');
  await send(s, `mine before ${stamp}`);
  await bob.waitFor('ann\'s line', (m) => m.message === `mine before ${stamp}`);

  blocked = true;
  for (const { ws, server } of links.splice(0)) {
    server.close();
    ws.close({ code: 4000, reason: 'network down' });
  }
  await waitForStatus(s, 'offline');
  await bob.waitFor('ann leaving the room', (m) => m.type === 'presence' && m.room === room && (m.left || []).includes(s.name));
  const missed = [1, 2, 3].map((i) => `missed ${i} ${stamp}`);
  for (const line of missed) bob.send({ type: 'message', room, message: line });
  await bob.waitFor('the last missed line', (m) => m.message === missed[2]);
  await send(s, `typed offline ${stamp}`);

  blocked = false;
  await s.page.evaluate(() => window.dispatchEvent(new Event('online')));
  await waitForStatus(s, 'online');
  await waitForMessage(s, missed[2], 'other');
  await bob.waitFor('the line typed offline', (m) => m.message === `typed offline ${stamp}`);
  await s.page.locator(`${tid('message')}[data-kind="own"][data-state="sent"]`).filter({ hasText: `typed offline ${stamp}` }).waitFor({ timeout: STEP });
  const after = `after ${stamp}`;
  bob.send({ type: 'message', room, message: after });
  await waitForMessage(s, after, 'other');

  const texts = (await logTexts(s)).filter((x) => x.endsWith(String(stamp)));
  assert.deepEqual(texts, [`before ${stamp}`, `mine before ${stamp}`, ...missed, `typed offline ${stamp}`, after],
    'every line once, in order');
  assert.equal(await s.page.locator(tid('gapNotice')).count(), 0, 'nothing was missed for good');
  assert.equal(await currentRoom(s), room, 'still in the room');
  assert.equal((await bob.messages.filter((m) => m.message === `typed offline ${stamp}`)).length, 1, 'sent once');
});

e2e('accessibility: the rooms sidebar (unread count, join error, topic, room list, marker) passes axe and works by keyboard', async (t) => {
  const [a, b] = await users(t, 'ann', 'bob');
  const room = uniqueRoom('axe-long-room-name-ok'); // near the 32 characters allowed
  await joinRoom(b, room);
  await send(b, `history for the marker ${Date.now()}`);
  await b.page.locator(`${tid('message')}[data-state="sent"]`).first().waitFor({ timeout: STEP });

  // By keyboard: from the message field into the sidebar, type a room, Enter.
  const { page } = a;
  await assertFocus(a, 'the message field', tid('messageInput'));
  await page.locator(tid('roomInput')).focus();
  await assertFocus(a, 'the room field', tid('roomInput'));
  await page.keyboard.type(room.slice(1).toUpperCase()); // without # and in capitals: still the same room
  await page.keyboard.press('Enter');
  await waitForRoom(a, room);
  await assertFocus(a, 'the message field after joining', tid('messageInput'));
  assert.equal((await page.locator(tid('messageLabel')).textContent()).trim(), `Message to ${room}`, 'the field names the room');
  await page.locator(tid('newMessagesMarker')).waitFor({ timeout: STEP });
  // Tab from the room's button reaches its Leave button.
  await page.locator(`${tid('myRooms')} button[data-room="${room}"]`).focus();
  await page.keyboard.press('Tab');
  await assertFocus(a, 'the leave button of the room', `${tid('myRooms')} button[data-leave="${room}"]`);
  assert.equal(await page.locator(`${tid('myRooms')} button[data-leave="${room}"]`).getAttribute('aria-label'), `Leave ${room}`);

  // Unread in the lobby, a join error, a topic, the room list.
  await send(b, `@${a.name} hello`); // a private line lands in the shown room
  const lobbyLine = `for the lobby ${Date.now()}`;
  await showRoom(b, '#lobby');
  await send(b, lobbyLine);
  await page.locator(`${tid('myRooms')} ${tid('unreadCount')}`).waitFor({ timeout: STEP });
  await page.locator(tid('topicInput')).fill('a topic for axe');
  await page.locator(tid('topicInput')).press('Enter');
  await page.locator(tid('roomTopic')).filter({ hasText: 'a topic for axe' }).waitFor({ timeout: STEP });
  await page.locator(tid('roomListRefresh')).click();
  await page.locator(`${tid('roomList')} button[data-room="${room}"]`).filter({ hasText: 'a topic for axe' }).waitFor({ timeout: STEP });
  await page.locator(tid('roomInput')).fill('#not valid');
  await page.locator(tid('roomInput')).press('Enter');
  await page.locator(tid('roomError')).waitFor({ state: 'visible', timeout: STEP });

  const sidebarFits = () => page.evaluate((sel) => {
    const side = document.querySelector(sel);
    return side.scrollWidth <= side.clientWidth + 1;
  }, tid('userPanel'));
  assert.ok(await sidebarFits(), 'the sidebar does not scroll sideways');
  await checkAccessibility(a, 'rooms light');
  await page.emulateMedia({ colorScheme: 'dark' });
  await checkAccessibility(a, 'rooms dark');
  await page.locator(tid('langSwitch')).selectOption('vi');
  await checkAccessibility(a, 'rooms dark vi');
  await page.emulateMedia({ colorScheme: 'light' });
  await checkAccessibility(a, 'rooms light vi');

  // Phone: the sidebar with the rooms opens over the chat and passes too.
  await page.setViewportSize({ width: 390, height: 780 });
  await page.locator(tid('userList')).waitFor({ state: 'hidden', timeout: STEP });
  await page.locator(tid('userListToggle')).click();
  await page.locator(tid('myRooms')).waitFor({ timeout: STEP });
  assert.ok(await sidebarFits(), 'the phone sidebar does not scroll sideways');
  await checkAccessibility(a, 'rooms phone with the sidebar open');
  // Choosing a room there shows it and closes the sidebar.
  await page.locator(`${tid('myRooms')} button[data-room="#lobby"]`).click();
  await waitForRoom(a, '#lobby');
  await page.locator(tid('myRooms')).waitFor({ state: 'hidden', timeout: STEP });
  await waitForMessage(a, lobbyLine, 'other');
});

e2e('after a server restart the page reconnects, re-joins and sends what was typed offline', async (t) => {
  assert.ok(env.E2E_SERVER_CMD && env.E2E_SERVER_PIDFILE && env.E2E_SERVER_LOG, 'run.sh must pass the server command, pidfile and log');
  const [a] = await users(t, 'ann');

  await stopServer();
  await waitForStatus(a, 'offline');
  assert.match(await a.page.locator(tid('connectionStatus')).innerText(), /disconnected/i);

  const offline = `typed while offline ${Date.now()}`;
  await send(a, offline);
  const pending = a.page.locator(`${tid('message')}[data-kind="own"]`).filter({ hasText: offline });
  await pending.waitFor({ timeout: STEP });
  assert.equal(await pending.getAttribute('data-state'), 'queued', 'shown as waiting, not lost');
  // Offline status, connection-lost notice and waiting message stay readable.
  await checkAccessibility(a, 'chat offline light');
  await a.page.emulateMedia({ colorScheme: 'dark' });
  await checkAccessibility(a, 'chat offline dark');

  // Restart just after a failed retry, while the page's next attempt (backoff
  // doubling from 250 ms) is still well over a second away, so an observer
  // can join first and must then receive the message sent from the outbox.
  await a.page.waitForFunction(
    (sel) => {
      const at = Number(document.querySelector(sel)?.dataset.retryAt || 0);
      return at - Date.now() > 1200;
    },
    tid('connectionStatus'),
    { timeout: STEP, polling: 20 },
  );
  await startServer();
  const observer = await TcpClient.connect(uniqueName('watch'));
  t.tcp.push(observer);
  await observer.join();
  const firstList = await observer.waitFor('user list', (m) => m.type === 'user_list');
  assert.ok(!firstList.users.includes(a.name), 'the observer joined before the page re-joined');

  // Reconnect uses backoff capped at about 5 s.
  await waitForStatus(a, 'online');
  await waitForUser(a, a.name);
  await a.page.locator(`${tid('message')}[data-kind="own"][data-state="sent"]`).filter({ hasText: offline }).waitFor({ timeout: STEP });
  await observer.waitFor('the message typed offline', (m) => m.type === 'message' && m.message === offline && m.sender === a.name);
  await waitForUser(a, observer.name);

  // And the connection works normally afterwards.
  const after = `after restart ${Date.now()}`;
  await send(a, after);
  await observer.waitFor('a message after the restart', (m) => m.type === 'message' && m.message === after);
  assert.equal(await entries(a, offline, 'own').count(), 1, 'the offline message is shown once');
});


e2e('rooms: after a server restart the page re-joins its room and says some messages were missed', async (t) => {
  const [a] = await users(t, 'ann');
  const room = uniqueRoom('restart');
  await joinRoom(a, room);
  await send(a, `before the restart ${Date.now()}`);
  await a.page.locator(`${tid('message')}[data-state="sent"]`).first().waitFor({ timeout: STEP });

  await stopServer();
  await waitForStatus(a, 'offline');
  await startServer();
  await a.page.evaluate(() => window.dispatchEvent(new Event('online')));
  await waitForStatus(a, 'online');
  // A new history (the server keeps none across restarts): the resume says gap.
  const gap = a.page.locator(tid('gapNotice'));
  await gap.waitFor({ timeout: STEP });
  assert.match(await gap.locator(tid('messageText')).innerText(), /some messages were missed/i);
  assert.equal(await currentRoom(a), room, 'still in the room');
  assert.match(a.page.url(), new RegExp(`room=${encodeURIComponent(room)}`));

  // The room works again: a newcomer and the page talk in it.
  const bob = await tcpInRoom(t, 'bob', room);
  await waitForUser(a, bob.name);
  const hello = `after the restart ${Date.now()}`;
  await send(a, hello);
  await bob.waitFor('the line after the restart', (m) => m.message === hello && m.room === room);
  await a.page.locator(tid('langSwitch')).selectOption('vi');
  assert.equal((await gap.locator(tid('messageText')).innerText()).trim(), 'Một số tin nhắn đã bị lỡ khi bạn vắng mặt.');
});
