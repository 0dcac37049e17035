// Chat page: rooms, message log, online list, composer with an offline outbox.
//
// Started either by the login page (handing over a connection that has already
// joined) or, when rooms.html is opened directly, by itself with the
// remembered name. Every piece of text from the network is written with
// textContent / text nodes; no markup is ever built from strings.
//
// Rooms. The connection joins with the `rooms` feature, so chat lines name
// their room and carry the room's `seq`. The page keeps, per room it is in,
// its log entries, online list, topic, unread count, history `epoch` and the
// highest `seq` shown. After every (re-)join it sends `room_join` for each of
// its rooms (#lobby included), with `since: {epoch, seq}` once it has seen
// the room, so a reconnect replays exactly what was missed (or the server
// says `gap`, shown as a notice). Lines at or below the highest seq shown are
// never shown twice. Until a room's replay has arrived, its live lines wait,
// so replay and live lines stay in order. The current room is in the address
// (`?room=%23name`) and the rooms joined in this tab in sessionStorage, so a
// reload comes back to them.
//
// Outgoing messages, online or not, get a log entry at once:
//   queued  (no connection: kept in the outbox, shown as waiting)
//   → sending (written to the socket, waiting for the server's answer)
//   → sent    (the server echoed it / confirmed the private message)
//   or failed (the server answered with an error).
// The server answers each chat line in order, so answers are matched to the
// oldest entry in flight. If the connection drops with entries in flight they
// go back to the front of the outbox and are sent again once their room is
// re-joined, unless the room's replay shows they had arrived.
'use strict';

(function () {
  const MUC = (window.MUC = window.MUC || {});
  const MAX_LOG_ENTRIES = 500;
  const FLUSH_GAP_MS = 120; // spacing between outbox messages after a reconnect
  const ROOMS_KEY = 'muc.rooms'; // sessionStorage: the rooms to re-join after a reload
  const ROOM_LIST_SHOWN = 100;
  const ROOM_ERRORS = new Set(['room_invalid', 'room_limit']);

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

  function sessionGet(key) {
    try { return window.sessionStorage.getItem(key); } catch { return null; }
  }
  function sessionSet(key, value) {
    try {
      if (value === null) window.sessionStorage.removeItem(key);
      else window.sessionStorage.setItem(key, value);
    } catch { /* storage off: a reload starts in the lobby */ }
  }

  function start({ conn, name, welcome, early }) {
    const { t, bind } = window.I18N;
    const LOBBY = MUC.LOBBY;
    const q = (id) => document.querySelector(`[data-testid="${id}"]`);
    const log = q('messageLog');   // the scrolling live region
    const list = q('messageList'); // the entries, an <ol> inside it
    const logTitle = document.getElementById('log-title');
    const emptyLog = q('emptyLog');
    const form = q('composer');
    const input = q('messageInput');
    const inputLabel = q('messageLabel');
    const status = q('connectionStatus');
    const statusText = q('connectionStatusText');
    const userList = q('userList');
    const userCount = q('userCount');
    const userCountSidebar = q('userCountSidebar');
    const usersRoom = q('usersRoom');
    const currentUser = q('currentUser');
    const exitButton = q('exitButton');
    const toggle = q('userListToggle');
    const roomName = q('currentRoom');
    const roomTopic = q('roomTopic');
    const otherUnread = q('otherUnread');
    const myRooms = q('myRooms');
    const joinForm = q('roomJoinForm');
    const roomInput = q('roomInput');
    const roomError = q('roomError');
    const topicForm = q('topicForm');
    const topicLabel = q('topicLabel');
    const topicInput = q('topicInput');
    const topicError = q('topicError');
    const roomListEl = q('roomList');
    const roomListStatus = q('roomListStatus');
    const refreshButton = q('roomListRefresh');
    const main = document.querySelector('.room');

    let me = name;
    let leaving = false;
    let wasOnline = false;
    let lostNoticeShown = false;
    let unread = 0;
    let refusals = 0;
    let countdownTimer = 0;
    let flushTimer = 0;
    let quietTimer = 0;
    let listTimer = 0;
    let topicBytes = 390;
    const outbox = [];   // entries not yet written to the socket
    const inflight = []; // entries written, waiting for the server's answer
    let baseTitle = document.title || 'MultiUserChat';
    const appTitle = baseTitle;

    // ---- rooms state ---------------------------------------------------

    /** name → state of a room this page is in (or is re-joining). */
    const rooms = new Map();
    let current = LOBBY;
    let wantCurrent = null;  // from the address: switch to it once joined
    let pendingJoin = null;  // {room, source: 'form' | 'list'} asked for by the user
    const joinQueue = [];    // rooms asked for with room_join, oldest first (errors answer in order)
    let pendingTopic = false;
    let roomListData = null;

    function roomState(n) {
      let r = rooms.get(n);
      if (!r) {
        r = {
          name: n, topic: '', users: [], count: 0,
          epoch: null, top: 0, lastSeq: 0, synced: false,
          items: [], marker: null, unread: 0,
          live: false, waiting: [],
        };
        rooms.set(n, r);
      }
      return r;
    }
    const cur = () => rooms.get(current) || roomState(LOBBY);
    roomState(LOBBY);

    function saveRooms() {
      const names = [...rooms.keys()].filter((n) => n !== LOBBY);
      sessionSet(ROOMS_KEY, names.length ? JSON.stringify(names) : null);
    }

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

    /**
     * Runs `fn` (which adds many entries at once: a replay, a room switch)
     * with the live region muted, so a screen reader does not read out a
     * whole page of history; new lines after it are announced again.
     */
    function quietly(fn) {
      log.setAttribute('aria-live', 'off');
      try {
        fn();
      } finally {
        clearTimeout(quietTimer);
        quietTimer = setTimeout(() => log.setAttribute('aria-live', 'polite'), 300);
      }
    }

    function appendTo(r, item, forceScroll) {
      r.items.push(item);
      while (r.items.length > MAX_LOG_ENTRIES) {
        const old = r.items.shift();
        old.remove();
        if (old === r.marker) r.marker = null;
      }
      if (r.name !== current) return;
      const stick = forceScroll || nearBottom();
      list.appendChild(item);
      emptyLog.hidden = true;
      if (stick) log.scrollTop = log.scrollHeight;
    }

    function append(item, forceScroll) {
      appendTo(cur(), item, forceScroll);
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

    function notice(text, kind = 'system', stamp, r = cur()) {
      appendTo(r, entry({ kind, text, stamp }));
    }

    function localNotice(key, args, kind = 'system', r = cur()) {
      const li = entry({ kind, text: '' });
      bind(li.querySelector('.text'), key, args);
      li.dataset.local = '1';
      appendTo(r, li);
      return li;
    }

    function moveToEnd(r, li) {
      const i = r.items.indexOf(li);
      if (i < 0) return;
      r.items.splice(i, 1);
      li.remove();
      appendTo(r, li);
    }

    /** The line between a room's replayed history and what arrives live. */
    function placeMarker(r) {
      if (r.marker) {
        r.marker.remove();
        r.items = r.items.filter((i) => i !== r.marker);
      }
      const li = el('li', 'log-marker');
      li.dataset.testid = 'newMessagesMarker';
      bind(li.appendChild(el('span', 'log-marker-text')), 'newMessages');
      r.marker = li;
      appendTo(r, li);
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

    function failDelivery(item, key, serverText) {
      setDelivery(item, 'failed');
      const why = el('div', 'why');
      bind(why, key);
      const detail = el('span', 'why-server muted', serverText ? ` ${t('serverSaid', { message: serverText })}` : '');
      item.li.querySelector('.bubble').append(why, detail);
    }

    // ---- users ---------------------------------------------------------

    function renderUsers() {
      const r = cur();
      r.users.sort((a, b) => a.localeCompare(b, undefined, { sensitivity: 'base' }));
      const items = r.users.map((u) => {
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
      const focused = document.activeElement && userList.contains(document.activeElement) ? document.activeElement.dataset.name : null;
      userList.replaceChildren(...items);
      if (focused) userList.querySelector(`button[data-name="${CSS.escape(focused)}"]`)?.focus();
      const shown = r.live || r.users.length ? String(r.count || r.users.length) : '–';
      userCount.textContent = shown;
      userCountSidebar.textContent = shown;
      usersRoom.textContent = r.name;
    }

    function setUsers(r, names, n) {
      r.users = [...new Set(names.filter((u) => typeof u === 'string' && u.length > 0))];
      r.count = typeof n === 'number' ? n : r.users.length;
      if (r.name === current) renderUsers();
    }

    function applyPresence(r, msg) {
      const left = Array.isArray(msg.left) ? msg.left : [];
      const joined = Array.isArray(msg.joined) ? msg.joined : [];
      r.users = r.users.filter((u) => !left.some((l) => sameName(l, u)));
      for (const j of joined) if (typeof j === 'string' && j.length > 0 && !r.users.some((u) => sameName(u, j))) r.users.push(j);
      r.count = typeof msg.count === 'number' ? msg.count : r.users.length;
      if (r.name === current) renderUsers();
    }

    function startPrivate(target) {
      input.value = `@${target} `;
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
      if (phone.matches) setSidebar(false);
    }

    // ---- rooms UI ------------------------------------------------------

    /** Rebuilds a list, keeping the keyboard focus on the same control. */
    function rebuild(container, nodes) {
      const a = document.activeElement;
      let sel = null;
      if (a && container.contains(a)) {
        if (a.dataset.leave) sel = `[data-leave="${CSS.escape(a.dataset.leave)}"]`;
        else if (a.dataset.room) sel = `[data-room="${CSS.escape(a.dataset.room)}"]`;
      }
      container.replaceChildren(...nodes);
      if (sel) container.querySelector(sel)?.focus();
    }

    function sortedRooms() {
      return [...rooms.values()].sort((a, b) => (a.name === LOBBY ? -1 : b.name === LOBBY ? 1 : a.name.localeCompare(b.name)));
    }

    function renderMyRooms() {
      const nodes = sortedRooms().map((r) => {
        const li = el('li', 'my-room');
        li.dataset.testid = 'myRoom';
        li.dataset.roomName = r.name;
        const btn = el('button', 'room-btn');
        btn.type = 'button';
        btn.dataset.room = r.name;
        btn.appendChild(el('span', 'room-label', r.name));
        if (r.name === current) btn.setAttribute('aria-current', 'true');
        if (r.unread > 0 && r.name !== current) {
          const badge = el('span', 'badge badge-unread', r.unread > 99 ? '99+' : r.unread);
          badge.dataset.testid = 'unreadCount';
          badge.setAttribute('aria-hidden', 'true');
          btn.appendChild(badge);
          const sr = el('span', 'visually-hidden');
          bind(sr, 'unreadCount', { n: r.unread });
          btn.appendChild(sr);
        }
        li.appendChild(btn);
        if (r.name !== LOBBY) {
          const leave = el('button', 'icon-btn leave-room');
          leave.type = 'button';
          leave.dataset.leave = r.name;
          leave.dataset.testid = 'leaveRoom';
          leave.dataset.i18nAria = 'leaveRoom';
          leave.dataset.i18nTitle = 'leaveRoom';
          leave.dataset.i18nArgs = JSON.stringify({ room: r.name });
          leave.setAttribute('aria-label', t('leaveRoom', { room: r.name }));
          leave.title = t('leaveRoom', { room: r.name });
          leave.appendChild(el('span', 'leave-icon', '×')).setAttribute('aria-hidden', 'true');
          li.appendChild(leave);
        }
        return li;
      });
      rebuild(myRooms, nodes);
      const elsewhere = sortedRooms().reduce((n, r) => n + (r.name === current ? 0 : r.unread), 0);
      if (elsewhere > 0) bind(otherUnread, 'otherUnread', { n: elsewhere });
      otherUnread.hidden = elsewhere === 0;
    }

    function renderRoomList() {
      if (!roomListData) return;
      const entries = roomListData.rooms.slice(0, ROOM_LIST_SHOWN).map((info) => {
        const li = el('li', 'room-entry-item');
        const btn = el('button', 'room-entry');
        btn.type = 'button';
        btn.dataset.room = info.name;
        btn.dataset.testid = 'roomListEntry';
        const head = el('span', 'room-entry-head');
        head.appendChild(el('span', 'room-label', info.name));
        const n = el('span', 'room-entry-count muted');
        bind(n, 'roomUsers', { n: info.users });
        head.appendChild(n);
        if (rooms.has(info.name)) {
          const tag = el('span', 'room-entry-joined');
          bind(tag, 'roomJoinedTag');
          head.appendChild(tag);
        }
        btn.appendChild(head);
        if (info.topic) btn.appendChild(el('span', 'room-entry-topic', info.topic));
        li.appendChild(btn);
        return li;
      });
      rebuild(roomListEl, entries);
      const total = roomListData.total;
      if (total > entries.length) bind(roomListStatus, 'roomListMore', { shown: entries.length, n: total });
      else bind(roomListStatus, 'roomListTotal', { n: total });
    }

    function requestRoomList() {
      if (!conn.request({ type: 'rooms' })) return;
      if (!roomListData) bind(roomListStatus, 'roomListLoading');
    }

    /** The list changes with joins, leaves and topics: ask again, at most every 300 ms. */
    function refreshRoomListSoon() {
      clearTimeout(listTimer);
      listTimer = setTimeout(requestRoomList, 300);
    }

    function renderHeader() {
      const r = cur();
      roomName.textContent = r.name;
      if (r.topic) {
        roomTopic.removeAttribute('data-i18n');
        roomTopic.textContent = r.topic;
        roomTopic.classList.remove('is-empty');
      } else {
        bind(roomTopic, 'topicNone');
        roomTopic.classList.add('is-empty');
      }
      bind(logTitle, 'messagesIn', { room: r.name });
      bind(inputLabel, 'messageLabelRoom', { room: r.name });
      bind(topicLabel, 'topicLabel', { room: r.name });
      if (document.activeElement !== topicInput) topicInput.value = r.topic;
    }

    function writeAddress() {
      const url = new URL(window.location.href);
      if (current === LOBBY) url.searchParams.delete('room');
      else url.searchParams.set('room', current);
      window.history.replaceState(null, '', `${url.pathname}${url.search}${url.hash}`);
    }

    /** Shows room `n`. `focusInput`: the user chose it, so the composer takes the focus. */
    function switchTo(n, { focusInput = false } = {}) {
      const r = rooms.get(n);
      if (!r) return;
      current = n;
      r.unread = 0;
      quietly(() => {
        list.replaceChildren(...r.items);
        I18N.apply(list); // entries of a room not shown missed any language change
        emptyLog.hidden = r.items.length > 0;
        log.scrollTop = log.scrollHeight;
      });
      hideError(topicError, topicInput);
      pendingTopic = false;
      renderHeader();
      renderUsers();
      renderMyRooms();
      writeAddress();
      if (focusInput) {
        if (phone.matches) setSidebar(false);
        input.focus();
      }
    }

    function showError(box, field, key, args, serverText) {
      box.replaceChildren();
      box.appendChild(bind(el('span', 'form-error-text'), key, args));
      if (serverText) box.appendChild(el('span', 'form-error-server', t('serverSaid', { message: serverText })));
      box.hidden = false;
      field.setAttribute('aria-invalid', 'true');
    }

    function hideError(box, field) {
      box.hidden = true;
      box.replaceChildren();
      field.removeAttribute('aria-invalid');
    }

    function sendRoomJoin(r) {
      const req = { type: 'room_join', room: r.name };
      // Resume only a room whose replay this page has shown; else the latest 50.
      if (r.synced && r.epoch) req.since = { epoch: r.epoch, seq: r.lastSeq };
      if (conn.request(req)) joinQueue.push(r.name);
    }

    /** Joins `n` (or shows it when already in it). */
    function openRoom(n, source) {
      if (rooms.has(n)) {
        if (source === 'form') {
          roomInput.value = '';
          hideError(roomError, roomInput);
        }
        switchTo(n, { focusInput: true });
        return;
      }
      if (conn.state !== 'online') {
        if (source === 'form') showError(roomError, roomInput, 'errRoomOffline');
        else localNotice('errRoomOffline', undefined, 'error');
        return;
      }
      pendingJoin = { room: n, source };
      conn.request({ type: 'room_join', room: n });
      joinQueue.push(n);
    }

    function leaveRoom(n) {
      if (n === LOBBY || !rooms.has(n)) return;
      if (!conn.request({ type: 'room_leave', room: n })) forgetRoom(n);
    }

    /** Drops a room from the page (after room_left, or when it cannot be re-joined). */
    function forgetRoom(n, noticeKey = 'noticeLeftRoom') {
      const r = rooms.get(n);
      if (!r) return;
      rooms.delete(n);
      // Messages still waiting for that room cannot be sent any more.
      for (let i = outbox.length - 1; i >= 0; i--) {
        if (outbox[i].room === n && !outbox[i].pm) outbox.splice(i, 1);
      }
      saveRooms();
      const wasCurrent = current === n;
      if (wasCurrent) switchTo(LOBBY);
      else renderMyRooms();
      localNotice(noticeKey, { room: n }, noticeKey === 'noticeLeftRoom' ? 'system' : 'error');
      if (wasCurrent || !document.activeElement || document.activeElement === document.body) input.focus();
      renderRoomList();
      refreshRoomListSoon();
      flush();
    }

    // ---- sending -------------------------------------------------------

    function newOutgoing(text) {
      const pm = parsePrivate(text);
      const li = pm
        ? entry({ kind: 'private-out', who: me, text: pm.body, label: { key: 'privateTo', args: { name: pm.to } } })
        : entry({ kind: 'own', who: me, text });
      return { text, pm, li, room: current, written: false };
    }

    /** A message may go out once its room is joined on this connection (private ones: once online). */
    function sendable(item) {
      const r = rooms.get(item.pm ? LOBBY : item.room);
      return Boolean(r && r.live);
    }

    function flush() {
      clearTimeout(flushTimer);
      flushTimer = 0;
      if (conn.state !== 'online' || outbox.length === 0) return;
      const item = outbox[0];
      if (!sendable(item)) return;
      if (!conn.sendChat(item.text, item.pm ? undefined : item.room)) return;
      outbox.shift();
      item.written = true;
      inflight.push(item);
      setDelivery(item, 'sending');
      if (outbox.length) flushTimer = setTimeout(flush, FLUSH_GAP_MS);
    }

    function submitText(text) {
      const item = newOutgoing(text);
      append(item.li, true);
      outbox.push(item);
      if (conn.state === 'online' && !flushTimer && outbox.length === 1 && sendable(item)) flush();
      else setDelivery(item, 'queued');
    }

    function takeInflight(match) {
      const i = inflight.findIndex(match);
      return i < 0 ? null : inflight.splice(i, 1)[0];
    }

    function confirmDelivery(item, shownText, stamp, ts) {
      setDelivery(item, 'sent');
      const body = item.li.querySelector('.text');
      if (shownText !== undefined && body.textContent !== shownText) body.textContent = shownText;
      const time = item.li.querySelector('time');
      if (stamp) time.title = `${stamp} (server)`;
      if (typeof ts === 'number') time.textContent = localTime(new Date(ts));
    }

    // ---- incoming ------------------------------------------------------

    function countUnread() {
      if (!document.hidden) return;
      unread += 1;
      document.title = `(${unread}) ${baseTitle}`;
    }

    function roomOf(msg) {
      return rooms.get(typeof msg.room === 'string' ? msg.room : LOBBY);
    }

    /** A chat line of room `r` (live, or from a replay when `replayed`). */
    function chatLine(r, msg, replayed) {
      const stamp = typeof msg.timestamp === 'string' ? msg.timestamp : undefined;
      const text = typeof msg.message === 'string' ? msg.message : '';
      const received = typeof msg.ts === 'number' ? new Date(msg.ts) : undefined;
      if (msg.sender === 'Server' || typeof msg.sender !== 'string') {
        if (!replayed) notice(text, 'system', stamp, r);
        return;
      }
      if (typeof msg.seq === 'number') {
        if (msg.seq <= r.lastSeq) return; // already shown (a replay after a reconnect)
        r.lastSeq = msg.seq;
      }
      if (sameName(msg.sender, me)) {
        const mine = (it) => !it.pm && it.room === r.name;
        let item = null;
        if (replayed) {
          // Sent before the connection dropped, and it did arrive: not again.
          const i = outbox.findIndex((it) => mine(it) && it.written && it.text === text);
          if (i >= 0) item = outbox.splice(i, 1)[0];
        } else {
          item = takeInflight((it) => mine(it) && it.text === text) || takeInflight(mine);
        }
        if (item) {
          confirmDelivery(item, text, stamp, msg.ts);
          return;
        }
        appendTo(r, entry({ kind: 'own', who: msg.sender, text, stamp, received }), r.name === current && !replayed);
        return;
      }
      appendTo(r, entry({ kind: 'other', who: msg.sender, text, stamp, received }));
      if (replayed) return;
      countUnread();
      if (r.name !== current) {
        r.unread += 1;
        renderMyRooms();
      }
    }

    function roomJoined(msg) {
      const n = msg.room;
      const r = roomState(n);
      const k = joinQueue.indexOf(n);
      if (k >= 0) joinQueue.splice(k, 1);
      if (typeof msg.epoch === 'string' && r.epoch && msg.epoch !== r.epoch) r.lastSeq = 0; // a new history
      if (typeof msg.epoch === 'string') r.epoch = msg.epoch;
      r.top = typeof msg.seq === 'number' ? msg.seq : 0;
      r.topic = typeof msg.topic === 'string' ? msg.topic : '';
      if (Array.isArray(msg.users)) setUsers(r, msg.users, msg.count);
      else if (typeof msg.count === 'number') r.count = msg.count;
      saveRooms();
      const asked = pendingJoin && pendingJoin.room === n ? pendingJoin : null;
      if (asked) {
        pendingJoin = null;
        if (asked.source === 'form') {
          roomInput.value = '';
          hideError(roomError, roomInput);
        }
        switchTo(n, { focusInput: true });
      } else if (wantCurrent === n) {
        wantCurrent = null;
        switchTo(n);
      } else if (n === current) {
        renderHeader();
        renderUsers();
      }
      renderMyRooms();
      if (asked) refreshRoomListSoon();
    }

    /** The replay after room_joined: history, then the live lines that waited for it. */
    function history(msg) {
      const r = roomOf(msg);
      if (!r) return;
      const messages = Array.isArray(msg.messages) ? msg.messages : [];
      const apply = () => {
        if (msg.gap) {
          const li = localNotice('noticeGap', undefined, 'error', r);
          li.dataset.testid = 'gapNotice';
        }
        const before = r.items.length;
        r.synced = true;
        for (const m of messages) if (m && typeof m === 'object') chatLine(r, m, true);
        r.lastSeq = Math.max(r.lastSeq, r.top);
        if (r.items.length > before) placeMarker(r);
        // What is still waiting to be sent goes out after the replay: show it there.
        for (const item of outbox) if (item.room === r.name) moveToEnd(r, item.li);
        if (r.name === current) log.scrollTop = log.scrollHeight;
      };
      if (r.name === current) quietly(apply);
      else apply();
      goLive(r);
    }

    function goLive(r) {
      r.live = true;
      const waiting = r.waiting.splice(0);
      for (const m of waiting) handleMessage(m);
      if (r.name === current) renderUsers();
      flush();
    }

    function topicChanged(msg) {
      const r = roomOf(msg);
      if (!r) return;
      r.topic = typeof msg.topic === 'string' ? msg.topic : '';
      const who = typeof msg.sender === 'string' ? msg.sender : '?';
      if (r.topic) localNotice('noticeTopic', { name: who, topic: r.topic }, 'system', r);
      else localNotice('noticeTopicCleared', { name: who }, 'system', r);
      if (sameName(who, me) && r.name === current) {
        pendingTopic = false;
        hideError(topicError, topicInput);
        topicInput.value = r.topic;
      }
      if (r.name === current) renderHeader();
      refreshRoomListSoon();
    }

    function roomError_(msg, text) {
      const n = joinQueue.shift();
      if (pendingJoin && (!n || pendingJoin.room === n)) {
        const asked = pendingJoin;
        pendingJoin = null;
        const key = msg.code === 'room_limit' ? 'errRoomLimit' : 'errRoomRefused';
        if (asked.source === 'form') {
          showError(roomError, roomInput, key, undefined, text);
          roomInput.focus();
        } else {
          notice(`${t(key)} ${t('serverSaid', { message: text })}`, 'error');
        }
        return;
      }
      // A room from the address or a re-join after a reconnect that the server refused.
      if (n && rooms.has(n) && n !== LOBBY) {
        forgetRoom(n, 'noticeRejoinFailed');
        if (wantCurrent === n) {
          wantCurrent = null;
          writeAddress();
        }
        notice(t('serverSaid', { message: text }), 'error');
        return;
      }
      notice(text || String(msg.code), 'error');
    }

    function handleMessage(msg) {
      const stamp = typeof msg.timestamp === 'string' ? msg.timestamp : undefined;
      const text = typeof msg.message === 'string' ? msg.message : '';
      switch (msg.type) {
        case 'message': {
          const r = roomOf(msg);
          if (!r) return; // a room just left
          if (!r.live && typeof msg.seq === 'number') {
            r.waiting.push(msg); // its replay comes first
            return;
          }
          chatLine(r, msg, false);
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
        case 'user_list': {
          const r = roomOf(msg);
          if (r && Array.isArray(msg.users)) setUsers(r, msg.users, msg.count);
          return;
        }
        case 'presence': {
          const r = roomOf(msg);
          if (r) applyPresence(r, msg);
          return;
        }
        case 'room_joined':
          if (typeof msg.room === 'string') roomJoined(msg);
          return;
        case 'history':
          history(msg);
          return;
        case 'room_left':
          if (typeof msg.room === 'string') forgetRoom(msg.room);
          return;
        case 'room_list':
          roomListData = {
            rooms: (Array.isArray(msg.rooms) ? msg.rooms : [])
              .filter((x) => x && typeof x.name === 'string')
              .map((x) => ({ name: x.name, users: Number(x.users) || 0, topic: typeof x.topic === 'string' ? x.topic : '' })),
            total: typeof msg.total === 'number' ? msg.total : 0,
          };
          renderRoomList();
          return;
        case 'topic':
          topicChanged(msg);
          return;
        case 'info':
          if (msg.limits && typeof msg.limits.topic_bytes === 'number') topicBytes = msg.limits.topic_bytes;
          notice(text, 'system', stamp);
          return;
        case 'error': {
          if (ROOM_ERRORS.has(msg.code)) {
            roomError_(msg, text);
            return;
          }
          if (msg.code === 'history_unavailable') {
            // The replay cannot be read: the room works, without its history.
            const r = [...rooms.values()].find((x) => !x.live) || cur();
            localNotice('errHistoryUnavailable', { room: r.name }, 'error', r);
            if (!r.live) goLive(r);
            return;
          }
          if (msg.code === 'bad_format' && pendingTopic && inflight.length === 0) {
            pendingTopic = false;
            showError(topicError, topicInput, 'errTopicRefused', undefined, text);
            return;
          }
          const item = inflight.shift();
          if (item) {
            const known = {
              unknown_user: 'errUnknownUser', rate_limited: 'errRateLimited', too_long: 'errTooLong', not_in_room: 'errNotInRoom',
            }[msg.code];
            failDelivery(item, known || 'errOther', text);
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

    /** After every accepted join: each room again, resuming where the page left off. */
    function joinAll() {
      joinQueue.length = 0;
      for (const r of sortedRooms()) sendRoomJoin(r);
      requestRoomList();
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
          joinAll();
          return;
        case 'dropped':
          if (leaving) return;
          // Whatever was in flight may not have reached the server: send it again
          // (unless the room's replay shows it arrived).
          for (const item of inflight.splice(0).reverse()) outbox.unshift(item);
          for (const item of outbox) setDelivery(item, 'queued');
          clearTimeout(flushTimer);
          flushTimer = 0;
          pendingJoin = null;
          pendingTopic = false;
          joinQueue.length = 0;
          // The lists are stale until the re-join brings fresh ones.
          for (const r of rooms.values()) {
            r.live = false;
            r.waiting = [];
            r.users = [];
            r.count = 0;
          }
          renderUsers();
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

    joinForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const n = MUC.normalizeRoom(roomInput.value);
      if (!n) {
        showError(roomError, roomInput, 'errRoomInvalid');
        roomInput.focus();
        return;
      }
      roomInput.value = n;
      openRoom(n, 'form');
    });
    roomInput.addEventListener('input', () => {
      if (!roomError.hidden) hideError(roomError, roomInput);
    });

    topicForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const topic = topicInput.value.trim();
      if (new TextEncoder().encode(topic).length > topicBytes) {
        showError(topicError, topicInput, 'errTopicLong', { max: topicBytes });
        topicInput.focus();
        return;
      }
      if (!conn.request({ type: 'topic', room: current, topic })) {
        showError(topicError, topicInput, 'errRoomOffline');
        return;
      }
      pendingTopic = true;
      hideError(topicError, topicInput);
    });
    topicInput.addEventListener('input', () => {
      if (!topicError.hidden) hideError(topicError, topicInput);
    });

    refreshButton.addEventListener('click', requestRoomList);

    // Clicks: a name starts a private message; a room is shown or joined; × leaves it.
    document.addEventListener('click', (e) => {
      const target = e.target instanceof Element ? e.target.closest('button[data-name], button[data-room], button[data-leave]') : null;
      if (!target || target.disabled) return;
      if (target.dataset.leave) {
        leaveRoom(target.dataset.leave);
        return;
      }
      if (target.dataset.room) {
        openRoom(target.dataset.room, 'list');
        return;
      }
      const who = target.dataset.name;
      if (who && !sameName(who, me)) startPrivate(who);
    });

    exitButton.addEventListener('click', async () => {
      if (leaving) return;
      leaving = true;
      exitButton.disabled = true;
      sessionSet(ROOMS_KEY, null);
      localNotice('noticeLeaving');
      await conn.leave();
      window.location.assign('index.html');
    });

    const phone = window.matchMedia('(max-width: 720px)');
    function setSidebar(open) {
      main.dataset.users = open ? 'open' : 'closed';
      toggle.setAttribute('aria-expanded', String(open));
    }
    toggle.addEventListener('click', () => setSidebar(main.dataset.users !== 'open'));
    // On a phone the open list covers the chat: Escape closes it and returns to the toggle.
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape' || !phone.matches || main.dataset.users !== 'open') return;
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

    // The rooms of this tab (a reload) and the one in the address come back.
    let stored = [];
    try { stored = JSON.parse(sessionGet(ROOMS_KEY) || '[]'); } catch { stored = []; }
    for (const n of Array.isArray(stored) ? stored : []) {
      const norm = MUC.normalizeRoom(n);
      if (norm) roomState(norm);
    }
    const fromAddress = MUC.normalizeRoom(new URLSearchParams(window.location.search).get('room') || '');
    if (fromAddress && fromAddress !== LOBBY) {
      roomState(fromAddress);
      wantCurrent = fromAddress;
    }

    renderHeader();
    renderUsers();
    renderMyRooms();
    conn.setHandler(onEvent);
    renderStatus();
    if (conn.state === 'online') {
      wasOnline = true;
      if (welcome) handleMessage(welcome);
    }
    for (const ev of early || []) onEvent(ev);
    if (conn.state === 'online') joinAll();
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
