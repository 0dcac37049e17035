// Chat room: message log, online list, composer with an offline outbox.
//
// Started either by the login page (handing over a connection that has already
// joined) or, when rooms.html is opened directly, by itself with the
// remembered name. Every piece of text from the network is written with
// textContent / text nodes; no markup is ever built from strings.
//
// Outgoing messages, online or not, get a log entry at once:
//   queued  (no connection: kept in the outbox, shown as waiting)
//   → sending (written to the socket, waiting for the server's answer)
//   → sent    (the server echoed it / confirmed the private message)
//   or failed (the server answered with an error).
// The server answers each chat line in order, so answers are matched to the
// oldest entry in flight. If the connection drops with entries in flight they
// go back to the front of the outbox and are sent again after the re-join.
'use strict';

(function () {
  const MUC = (window.MUC = window.MUC || {});
  const MAX_LOG_ENTRIES = 500;
  const FLUSH_GAP_MS = 120; // spacing between outbox messages after a reconnect

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function localTime(date) {
    return date.toLocaleTimeString(I18N.lang === 'vi' ? 'vi-VN' : 'en-GB', {
      hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
    });
  }

  function sameName(a, b) {
    return String(a).toLowerCase() === String(b).toLowerCase();
  }

  /** `@name rest` → {to, body}; else null. */
  function parsePrivate(text) {
    const m = /^@(\S+)\s+([\s\S]+)$/.exec(text);
    return m ? { to: m[1], body: m[2] } : null;
  }

  function start({ conn, name, welcome, early }) {
    const { t, bind } = window.I18N;
    const q = (id) => document.querySelector(`[data-testid="${id}"]`);
    const log = q('messageLog');   // the scrolling live region
    const list = q('messageList'); // the entries, an <ol> inside it
    const emptyLog = q('emptyLog');
    const form = q('composer');
    const input = q('messageInput');
    const status = q('connectionStatus');
    const statusText = q('connectionStatusText');
    const userList = q('userList');
    const userCount = q('userCount');
    const userCountSidebar = q('userCountSidebar');
    const currentUser = q('currentUser');
    const exitButton = q('exitButton');
    const toggle = q('userListToggle');
    const room = document.querySelector('.room');

    let me = name;
    let users = [];
    let count = 0;
    let leaving = false;
    let wasOnline = false;
    let lostNoticeShown = false;
    let unread = 0;
    let refusals = 0;
    let countdownTimer = 0;
    let flushTimer = 0;
    const outbox = [];   // entries not yet written to the socket
    const inflight = []; // entries written, waiting for the server's answer
    let baseTitle = document.title || 'MultiUserChat';
    const appTitle = baseTitle;

    function showName() {
      currentUser.textContent = me;
      baseTitle = `${me} · ${appTitle}`;
      document.title = unread ? `(${unread}) ${baseTitle}` : baseTitle;
    }
    showName();

    // ---- log -----------------------------------------------------------

    function nearBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    }

    function append(item, forceScroll) {
      const stick = forceScroll || nearBottom();
      list.appendChild(item);
      while (list.childElementCount > MAX_LOG_ENTRIES) list.firstElementChild.remove();
      emptyLog.hidden = true;
      if (stick) log.scrollTop = log.scrollHeight;
    }

    /**
     * One log entry. kind: own | other | system | error | private-in | private-out.
     * `label` is an i18n key with args (private markers), `who` a sender name.
     */
    function entry({ kind, who, text, label, stamp, received }) {
      const li = el('li', `msg msg-${kind}`);
      li.dataset.testid = 'message';
      li.dataset.kind = kind;
      const bubble = el('div', 'bubble');
      const meta = el('div', 'meta');
      if (who && (kind === 'own' || kind === 'private-out')) {
        meta.appendChild(el('span', 'who', who));
      } else if (who) {
        // Clicking a sender starts a private message. Out of the Tab order so
        // the keyboard need not step through every message: the online list
        // (and typing @name) does the same from the keyboard.
        const whoEl = el('button', 'who', who);
        whoEl.type = 'button';
        whoEl.tabIndex = -1;
        whoEl.dataset.name = who;
        whoEl.dataset.i18nTitle = 'pmTitle';
        whoEl.dataset.i18nArgs = JSON.stringify({ name: who });
        whoEl.title = t('pmTitle', { name: who });
        meta.appendChild(whoEl);
      }
      if (label) {
        const tag = el('span', 'tag');
        tag.dataset.testid = 'privateTag';
        bind(tag, label.key, label.args);
        meta.appendChild(tag);
      }
      const time = el('time', 'time', localTime(received || new Date()));
      if (stamp) time.title = `${stamp} (server)`;
      meta.appendChild(time);
      const body = el('div', 'text', text);
      body.dataset.testid = 'messageText';
      if (kind === 'system' || kind === 'error') {
        bubble.append(body, time);
      } else {
        bubble.append(meta, body);
      }
      li.appendChild(bubble);
      return li;
    }

    function notice(text, kind = 'system', stamp) {
      append(entry({ kind, text, stamp }));
    }

    function localNotice(key, args, kind = 'system') {
      const li = entry({ kind, text: '' });
      bind(li.querySelector('.text'), key, args);
      li.dataset.local = '1';
      append(li);
    }

    function setDelivery(item, state) {
      item.li.dataset.state = state;
      let badge = item.li.querySelector('.delivery');
      if (state === 'sent') {
        if (badge) badge.remove();
        return;
      }
      if (!badge) {
        badge = el('span', 'delivery');
        badge.dataset.testid = 'deliveryState';
        item.li.querySelector('.meta').appendChild(badge);
      }
      bind(badge, { queued: 'stateQueued', sending: 'stateSending', failed: 'stateFailed' }[state]);
    }

    // ---- users ---------------------------------------------------------

    function renderUsers() {
      users.sort((a, b) => a.localeCompare(b, undefined, { sensitivity: 'base' }));
      const items = users.map((u) => {
        const li = el('li', 'user');
        const btn = el('button', 'user-btn');
        btn.type = 'button';
        btn.dataset.name = u;
        btn.appendChild(el('span', 'avatar', [...u][0].toUpperCase()));
        btn.appendChild(el('span', 'user-name', u));
        if (sameName(u, me)) {
          li.classList.add('is-me');
          btn.disabled = true;
          const you = el('span', 'you muted');
          bind(you, 'you');
          btn.appendChild(you);
        } else {
          btn.dataset.i18nTitle = 'pmTitle';
          btn.dataset.i18nArgs = JSON.stringify({ name: u });
          btn.title = t('pmTitle', { name: u });
        }
        li.appendChild(btn);
        return li;
      });
      userList.replaceChildren(...items);
      const shown = String(count || users.length);
      userCount.textContent = shown;
      userCountSidebar.textContent = shown;
    }

    function setUsers(list, n) {
      users = [...new Set(list.filter((u) => typeof u === 'string' && u.length > 0))];
      count = typeof n === 'number' ? n : users.length;
      renderUsers();
    }

    function applyPresence(msg) {
      const left = Array.isArray(msg.left) ? msg.left : [];
      const joined = Array.isArray(msg.joined) ? msg.joined : [];
      users = users.filter((u) => !left.some((l) => sameName(l, u)));
      for (const j of joined) if (typeof j === 'string' && j.length > 0 && !users.some((u) => sameName(u, j))) users.push(j);
      count = typeof msg.count === 'number' ? msg.count : users.length;
      renderUsers();
    }

    function startPrivate(target) {
      input.value = `@${target} `;
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
      if (window.matchMedia('(max-width: 720px)').matches) setSidebar(false);
    }

    // ---- sending -------------------------------------------------------

    function newOutgoing(text) {
      const pm = parsePrivate(text);
      const li = pm
        ? entry({ kind: 'private-out', who: me, text: pm.body, label: { key: 'privateTo', args: { name: pm.to } } })
        : entry({ kind: 'own', who: me, text });
      return { text, pm, li };
    }

    function flush() {
      clearTimeout(flushTimer);
      flushTimer = 0;
      if (conn.state !== 'online' || outbox.length === 0) return;
      const item = outbox[0];
      if (!conn.sendChat(item.text)) return;
      outbox.shift();
      inflight.push(item);
      setDelivery(item, 'sending');
      if (outbox.length) flushTimer = setTimeout(flush, FLUSH_GAP_MS);
    }

    function submitText(text) {
      const item = newOutgoing(text);
      append(item.li, true);
      outbox.push(item);
      if (conn.state === 'online' && !flushTimer && outbox.length === 1) flush();
      else setDelivery(item, 'queued');
    }

    function takeInflight(match) {
      const i = inflight.findIndex(match);
      return i < 0 ? null : inflight.splice(i, 1)[0];
    }

    function confirmDelivery(item, shownText, stamp) {
      setDelivery(item, 'sent');
      const body = item.li.querySelector('.text');
      if (shownText !== undefined && body.textContent !== shownText) body.textContent = shownText;
      if (stamp) item.li.querySelector('time').title = `${stamp} (server)`;
    }

    // ---- incoming ------------------------------------------------------

    function countUnread() {
      if (!document.hidden) return;
      unread += 1;
      document.title = `(${unread}) ${baseTitle}`;
    }

    function handleMessage(msg) {
      const stamp = typeof msg.timestamp === 'string' ? msg.timestamp : undefined;
      const text = typeof msg.message === 'string' ? msg.message : '';
      switch (msg.type) {
        case 'message': {
          if (msg.sender === 'Server' || typeof msg.sender !== 'string') {
            notice(text, 'system', stamp);
            return;
          }
          if (sameName(msg.sender, me)) {
            const item = takeInflight((it) => !it.pm && it.text === text) || takeInflight((it) => !it.pm);
            if (item) {
              confirmDelivery(item, text, stamp);
              return;
            }
            append(entry({ kind: 'own', who: msg.sender, text, stamp }), true);
            return;
          }
          append(entry({ kind: 'other', who: msg.sender, text, stamp }));
          countUnread();
          return;
        }
        case 'private': {
          const from = typeof msg.sender === 'string' ? msg.sender : '?';
          append(entry({ kind: 'private-in', who: from, text, stamp, label: { key: 'privateFrom', args: { name: from } } }));
          countUnread();
          return;
        }
        case 'private_sent': {
          const to = typeof msg.to_user === 'string' ? msg.to_user : '?';
          const item = takeInflight((it) => it.pm && sameName(it.pm.to, to)) || takeInflight((it) => it.pm);
          if (item) {
            confirmDelivery(item, text || item.pm.body, stamp);
            return;
          }
          append(entry({ kind: 'private-out', who: me, text, stamp, label: { key: 'privateTo', args: { name: to } } }), true);
          return;
        }
        case 'user_list':
          if (Array.isArray(msg.users)) setUsers(msg.users, msg.count);
          return;
        case 'presence':
          applyPresence(msg);
          return;
        case 'info':
          notice(text, 'system', stamp);
          return;
        case 'error': {
          const item = inflight.shift();
          if (item) {
            setDelivery(item, 'failed');
            const why = el('div', 'why');
            const known = { unknown_user: 'errUnknownUser', rate_limited: 'errRateLimited', too_long: 'errTooLong' }[msg.code];
            bind(why, known || 'errOther');
            const detail = el('span', 'why-server muted', text ? ` ${t('serverSaid', { message: text })}` : '');
            item.li.querySelector('.bubble').append(why, detail);
            return;
          }
          notice(text || String(msg.code || 'error'), 'error', stamp);
          return;
        }
        default:
          // Unknown types are ignored: newer servers may add some.
      }
    }

    // ---- connection state ----------------------------------------------

    function renderStatus(ev) {
      clearInterval(countdownTimer);
      countdownTimer = 0;
      const state = conn.state;
      status.dataset.state = state === 'online' ? 'online' : state === 'offline' || state === 'closed' ? 'offline' : 'connecting';
      // When the next reconnect attempt fires (ms since the epoch), for tests and tooltips.
      if (state === 'offline' && conn.retryAt) status.dataset.retryAt = String(conn.retryAt);
      else delete status.dataset.retryAt;
      if (state === 'online') bind(statusText, 'statusOnline');
      else if (state === 'connecting' || state === 'open') bind(statusText, 'statusConnecting');
      else if (state === 'joining') bind(statusText, ev && ev.nameBusy ? 'statusNameBusy' : 'statusJoining');
      else if (state === 'offline' && conn.retryAt) {
        const tick = () => {
          const seconds = Math.max(1, Math.ceil((conn.retryAt - Date.now()) / 1000));
          bind(statusText, 'statusRetryIn', { seconds });
        };
        tick();
        countdownTimer = setInterval(tick, 500);
      } else bind(statusText, 'statusOffline');
      input.dataset.i18nPlaceholder = state === 'online' ? 'messagePlaceholder' : 'offlinePlaceholder';
      input.placeholder = t(input.dataset.i18nPlaceholder);
    }

    function onEvent(ev) {
      switch (ev.kind) {
        case 'state':
          renderStatus(ev);
          return;
        case 'joined':
          me = ev.name;
          showName();
          I18N.storageSet(MUC.NAME_KEY, me);
          if (wasOnline) localNotice('noticeBack', { name: me });
          else if (ev.message) handleMessage(ev.message);
          wasOnline = true;
          lostNoticeShown = false;
          flush();
          return;
        case 'dropped':
          if (leaving) return;
          // Whatever was in flight may not have reached the server: send it again.
          for (const item of inflight.splice(0).reverse()) outbox.unshift(item);
          for (const item of outbox) setDelivery(item, 'queued');
          clearTimeout(flushTimer);
          flushTimer = 0;
          // The list is stale until the re-join brings a fresh one.
          users = [];
          count = 0;
          renderUsers();
          userCount.textContent = '–';
          userCountSidebar.textContent = '–';
          if (wasOnline && !lostNoticeShown) {
            localNotice('noticeLost', undefined, 'error');
            lostNoticeShown = true;
          }
          return;
        case 'refused':
          // Only possible before the first accepted join (direct load of rooms.html).
          // Right after a reload the server may not have dropped the old page's
          // connection yet, so a taken name gets a few short retries first.
          if (ev.code === 'name_taken' && refusals < 4) {
            setTimeout(() => conn.join(me), 300 * 2 ** refusals);
            refusals += 1;
            return;
          }
          conn.leave();
          window.location.replace(`index.html?name=${encodeURIComponent(me)}&error=${encodeURIComponent(ev.code)}`);
          return;
        case 'message':
          handleMessage(ev.message);
          return;
        default:
      }
    }

    // ---- controls ------------------------------------------------------

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text || leaving) return;
      input.value = '';
      submitText(text);
      input.focus();
    });

    // Clicking a name (online list or a message's sender) starts a private message.
    document.addEventListener('click', (e) => {
      const target = e.target instanceof Element ? e.target.closest('button[data-name]') : null;
      if (!target || target.disabled) return;
      const who = target.dataset.name;
      if (who && !sameName(who, me)) startPrivate(who);
    });

    exitButton.addEventListener('click', async () => {
      if (leaving) return;
      leaving = true;
      exitButton.disabled = true;
      localNotice('noticeLeaving');
      await conn.leave();
      window.location.assign('index.html');
    });

    const phone = window.matchMedia('(max-width: 720px)');
    function setSidebar(open) {
      room.dataset.users = open ? 'open' : 'closed';
      toggle.setAttribute('aria-expanded', String(open));
    }
    toggle.addEventListener('click', () => setSidebar(room.dataset.users !== 'open'));
    // On a phone the open list covers the chat: Escape closes it and returns to the toggle.
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape' || !phone.matches || room.dataset.users !== 'open') return;
      setSidebar(false);
      toggle.focus();
    });
    phone.addEventListener('change', () => setSidebar(!phone.matches));
    setSidebar(!phone.matches);

    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && unread) {
        unread = 0;
        document.title = baseTitle;
      }
    });

    I18N.onChange(() => {
      // Times follow the language's format only for new entries; strings re-render via data-i18n.
      renderStatus();
    });

    // ---- go ------------------------------------------------------------

    renderUsers();
    conn.setHandler(onEvent);
    renderStatus();
    if (conn.state === 'online') {
      wasOnline = true;
      if (welcome) handleMessage(welcome);
    }
    for (const ev of early || []) onEvent(ev);
    input.focus();
    document.body.dataset.ready = 'room';
  }

  MUC.Room = { start };

  // rooms.html opened directly (bookmark, reload): join by itself.
  document.addEventListener('DOMContentLoaded', () => {
    if (document.body.dataset.page !== 'room' || MUC.Room.started) return;
    MUC.Room.started = true;
    const params = new URLSearchParams(window.location.search);
    const name = params.get('name') || I18N.storageGet(MUC.NAME_KEY);
    if (!name || MUC.checkName(name)) {
      window.location.replace('index.html');
      return;
    }
    const conn = new MUC.ChatConnection(null, { reconnectBeforeJoin: true });
    start({ conn, name });
    conn.join(name);
  });
})();
