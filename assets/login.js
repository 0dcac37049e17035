// Login page: the name is accepted only when the server accepts a real join.
//
// Submitting opens the WebSocket (once) and sends a join. A refusal
// (name_taken / name_invalid) shows the server's words under the field and the
// same socket takes the next try: no reload. On acceptance the room markup
// (rooms.html, fetched in advance) replaces this page's content, the address
// becomes rooms.html, and the room takes over the already-joined connection.
// Handing the live socket over avoids a leave-and-rejoin that others would
// see, and the race of a second join against the first connection's close.
'use strict';

(function () {
  if (document.body.dataset.page !== 'login') return;
  const { t, bind } = window.I18N;
  const MUC = window.MUC;

  const form = document.querySelector('[data-testid="loginForm"]');
  const nameInput = document.querySelector('[data-testid="loginName"]');
  const submit = document.querySelector('[data-testid="loginSubmit"]');
  const submitLabel = submit.querySelector('[data-i18n]');
  const errorBox = document.querySelector('[data-testid="loginError"]');
  const errorText = document.querySelector('[data-testid="loginErrorText"]');
  const errorServer = document.querySelector('[data-testid="loginErrorServer"]');
  const status = document.querySelector('[data-testid="connectionStatus"]');

  let conn = null;
  let busy = false;
  const early = []; // events that arrive between acceptance and the room taking over

  // rooms.html is needed the moment the join is accepted; fetch it now.
  const roomMarkup = fetch('rooms.html', { credentials: 'same-origin', cache: 'no-cache' })
    .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`rooms.html: HTTP ${r.status}`))));
  roomMarkup.catch(() => {}); // reported when used

  function showError(key, serverMessage) {
    bind(errorText, key);
    errorServer.textContent = serverMessage ? t('serverSaid', { message: serverMessage }) : '';
    errorServer.hidden = !serverMessage;
    errorBox.hidden = false;
    nameInput.setAttribute('aria-invalid', 'true');
  }

  function clearError() {
    errorBox.hidden = true;
    nameInput.removeAttribute('aria-invalid');
  }

  function setBusy(on) {
    busy = on;
    submit.disabled = on;
    nameInput.readOnly = on;
    bind(submitLabel, on ? 'loginJoining' : 'loginSubmit');
  }

  function setStatus(key) {
    status.dataset.state = key ? conn.state : 'idle';
    if (key) bind(status, key);
    else {
      status.removeAttribute('data-i18n');
      status.textContent = '';
    }
  }

  function onEvent(ev) {
    if (ev.kind === 'state') {
      if (ev.state === 'connecting') setStatus('statusConnecting');
      else if (ev.state === 'joining') setStatus('statusJoining');
      else setStatus(null);
      return;
    }
    if (ev.kind === 'joined') {
      enterRoom(ev.name, ev.message);
      return;
    }
    if (ev.kind === 'refused') {
      setBusy(false);
      showError(ev.code === 'name_taken' ? 'errNameTaken' : 'errNameInvalid', ev.message);
      nameInput.focus();
      nameInput.select();
      return;
    }
    if (ev.kind === 'dropped') {
      if (busy) {
        setBusy(false);
        showError('errUnreachable');
      }
      return;
    }
    if (ev.kind === 'message') {
      const msg = ev.message;
      if (busy && msg.type === 'error') {
        // Any other refusal of the join (e.g. the server is full).
        setBusy(false);
        showError('errJoinFailed', msg.message);
        return;
      }
      early.push(ev);
    }
  }

  async function enterRoom(name, welcome) {
    I18N.storageSet(MUC.NAME_KEY, name);
    // Until the room is ready, keep what the server sends in order.
    conn.setHandler((ev) => early.push(ev));
    let html;
    try {
      html = await roomMarkup;
    } catch (err) {
      console.error(err);
      // Fall back to a plain navigation; the room page joins by itself.
      await conn.leave();
      window.location.assign(`rooms.html?name=${encodeURIComponent(name)}`);
      return;
    }
    const doc = new DOMParser().parseFromString(html, 'text/html');
    for (const s of doc.querySelectorAll('script')) s.remove();
    document.title = doc.title;
    document.body.className = doc.body.className;
    document.body.dataset.page = 'room';
    document.body.replaceChildren(...[...doc.body.childNodes].map((n) => document.importNode(n, true)));
    window.history.replaceState(null, '', `rooms.html?name=${encodeURIComponent(name)}`);
    I18N.apply();
    I18N.wireSwitches();
    MUC.Room.start({ conn, name, welcome, early });
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (busy) return;
    const name = nameInput.value.trim();
    nameInput.value = name;
    const problem = MUC.checkName(name);
    if (problem) {
      showError(problem);
      nameInput.focus();
      return;
    }
    clearError();
    setBusy(true);
    if (!conn) conn = new MUC.ChatConnection(onEvent);
    conn.join(name);
  });

  nameInput.addEventListener('input', () => {
    if (!errorBox.hidden) clearError();
  });

  I18N.onChange(() => {
    if (busy) bind(submitLabel, 'loginJoining');
  });

  // Pre-fill: a name handed back by the room page, else the remembered one.
  const params = new URLSearchParams(window.location.search);
  const fromRoom = params.get('name');
  nameInput.value = fromRoom || I18N.storageGet(MUC.NAME_KEY) || '';
  const code = params.get('error');
  if (code === 'name_taken') showError('errNameTaken');
  else if (code === 'name_invalid') showError('errNameInvalid');
  if (params.has('error') || params.has('name')) window.history.replaceState(null, '', window.location.pathname);
  nameInput.focus();
  if (nameInput.value) nameInput.select();
  // Runs after i18n.js has translated the page (its listener was added first).
  document.addEventListener('DOMContentLoaded', () => {
    document.body.dataset.ready = 'login';
  });
})();
