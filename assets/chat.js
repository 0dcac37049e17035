// The WebSocket connection to the chat server: connect, join, reconnect.
//
// How it works
//   states: 'connecting' → 'joining' → 'online'; any drop → 'offline', then a
//   reconnect after an exponential backoff (250 ms doubling, capped at 5 s,
//   with jitter) → 'connecting' again.
//   - join(name) sends a join as soon as the socket is open. The server answers
//     an `info` carrying `user` (accepted) or an `error` name_taken /
//     name_invalid (refused; the socket stays open and join() may be called again).
//   - After the first accepted join the name is kept, and every reconnect
//     re-joins with it. A name_taken during a re-join usually means the server
//     has not yet noticed our previous socket is gone: retry with backoff.
//   - leave() sends `exit` and closes for good (no reconnect).
// The URL is always ws(s):// + location.host + /ws: the page never needs an address.
'use strict';

(function () {
  const BACKOFF_FIRST_MS = 250;
  const BACKOFF_CAP_MS = 5000;

  function wsUrl() {
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${window.location.host}/ws`;
  }

  function backoffDelay(attempt) {
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 10));
    // ±20 % jitter so many clients do not hammer a restarted server in lockstep.
    const jittered = base * (0.8 + Math.random() * 0.4);
    return Math.round(Math.min(BACKOFF_CAP_MS, jittered));
  }

  class ChatConnection {
    /**
     * `onEvent(event)` gets {kind:'state'|'message'|'joined'|'refused'|'dropped', ...}.
     * `reconnectBeforeJoin`: also reconnect when no join was accepted yet (the
     * room page does; the login page reports the failure instead).
     */
    constructor(onEvent, { reconnectBeforeJoin = false } = {}) {
      this.onEvent = onEvent || (() => {});
      this.reconnectBeforeJoin = reconnectBeforeJoin;
      this.ws = null;
      this.state = 'idle';
      this.wanted = null;        // name to (re-)join with
      this.accepted = null;      // name the server accepted, once it did
      this.attempt = 0;          // reconnect attempts since the last accepted join
      this.retryAt = 0;          // when the next reconnect fires (for the countdown)
      this.retryTimer = 0;
      this.rejoinTimer = 0;
      this.rejoinAttempt = 0;
      this.closedForGood = false;
      this.everOpened = false;
      this.wake = () => this.reconnectNow();
      window.addEventListener('online', this.wake);
      document.addEventListener('visibilitychange', () => {
        if (!document.hidden) this.wake();
      });
    }

    setHandler(onEvent) {
      this.onEvent = onEvent;
    }

    emit(event) {
      try {
        this.onEvent(event);
      } catch (err) {
        console.error('chat event handler failed', err);
      }
    }

    setState(state, extra) {
      this.state = state;
      this.emit({ kind: 'state', state, ...extra });
    }

    connect() {
      if (this.closedForGood) return;
      if (this.ws && (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN)) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = 0;
      this.setState('connecting');
      let ws;
      try {
        ws = new WebSocket(wsUrl());
      } catch (err) {
        console.error('cannot open WebSocket', err);
        this.scheduleReconnect();
        return;
      }
      this.ws = ws;
      ws.addEventListener('open', () => {
        if (ws !== this.ws) return;
        this.everOpened = true;
        if (this.wanted) this.sendJoin();
        else this.setState('open');
      });
      ws.addEventListener('message', (ev) => {
        if (ws !== this.ws) return;
        this.handleFrame(ev.data);
      });
      ws.addEventListener('close', (ev) => {
        if (ws !== this.ws) return;
        this.ws = null;
        clearTimeout(this.rejoinTimer);
        if (this.closedForGood) {
          this.setState('closed');
          return;
        }
        this.emit({ kind: 'dropped', code: ev.code, reason: ev.reason });
        if (this.accepted || this.reconnectBeforeJoin) this.scheduleReconnect();
        else this.setState('offline', { retryAt: 0 });
      });
      // 'error' is always followed by 'close'; nothing to do here.
    }

    scheduleReconnect() {
      if (this.closedForGood) return;
      const delay = backoffDelay(this.attempt);
      this.attempt += 1;
      this.retryAt = Date.now() + delay;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
      this.setState('offline', { retryAt: this.retryAt });
    }

    /** Skips the wait when the browser says the network is back or the tab is shown again. */
    reconnectNow() {
      if (this.closedForGood || this.ws || !this.retryTimer) return;
      this.connect();
    }

    /** Asks to join as `name` (now if the socket is open, else once it opens). */
    join(name) {
      this.wanted = name;
      this.rejoinAttempt = 0;
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendJoin();
      else this.connect();
    }

    sendJoin() {
      clearTimeout(this.rejoinTimer);
      this.setState('joining');
      // `rooms`: messages name their room and carry seq/ts; the room page asks
      // for each room's history itself (room_join, with `since` after a drop).
      this.sendRaw({ type: 'join', sender: this.wanted, features: ['presence', 'rooms'] });
    }

    handleFrame(data) {
      if (typeof data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        console.warn('ignoring a frame that is not JSON');
        return;
      }
      if (!msg || typeof msg !== 'object') return;

      if (this.state === 'joining') {
        if (msg.type === 'info' && typeof msg.user === 'string') {
          this.accepted = msg.user;
          this.wanted = msg.user;
          this.attempt = 0;
          this.rejoinAttempt = 0;
          this.setState('online');
          this.emit({ kind: 'joined', name: msg.user, message: msg });
          return;
        }
        if (msg.type === 'error' && (msg.code === 'name_taken' || msg.code === 'name_invalid')) {
          if (this.accepted && msg.code === 'name_taken') {
            // Re-joining after a drop: our old connection may still hold the name.
            const delay = backoffDelay(this.rejoinAttempt);
            this.rejoinAttempt += 1;
            this.setState('joining', { nameBusy: true });
            this.rejoinTimer = setTimeout(() => {
              if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendJoin();
            }, delay);
            return;
          }
          this.setState('open');
          this.emit({ kind: 'refused', code: msg.code, message: msg.message, rejoin: Boolean(this.accepted) });
          return;
        }
      }
      this.emit({ kind: 'message', message: msg });
    }

    sendRaw(obj) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(obj));
      return true;
    }

    /** Sends a chat line to `room`; false when not joined (the caller keeps it in its outbox). */
    sendChat(text, room) {
      if (this.state !== 'online') return false;
      const obj = { type: 'message', sender: this.accepted, message: text };
      if (room) obj.room = room;
      return this.sendRaw(obj);
    }

    /** Sends a request object (room_join, rooms, topic, ...) when joined; false otherwise. */
    request(obj) {
      if (this.state !== 'online') return false;
      return this.sendRaw(obj);
    }

    /** Sends `exit` and closes without reconnecting; resolves once closed (or after a short wait). */
    leave() {
      this.closedForGood = true;
      clearTimeout(this.retryTimer);
      clearTimeout(this.rejoinTimer);
      window.removeEventListener('online', this.wake);
      const ws = this.ws;
      if (!ws) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => resolve();
        ws.addEventListener('close', done, { once: true });
        setTimeout(done, 800);
        if (ws.readyState === WebSocket.OPEN && this.accepted) {
          ws.send(JSON.stringify({ type: 'exit', sender: this.accepted }));
        }
        // close() is queued after the exit frame, so the server reads the exit first.
        try { ws.close(1000, 'bye'); } catch { done(); }
      });
    }
  }

  window.MUC = window.MUC || {};
  window.MUC.ChatConnection = ChatConnection;
  window.MUC.NAME_KEY = 'muc.name';

  /**
   * A room name as the server will hold it (`#` added when missing, ASCII
   * letters lower-cased), or null when it breaks the rule: `#` and 1 to 32 of
   * a-z 0-9 _ - (the server's rule; no other scripts).
   */
  window.MUC.normalizeRoom = function normalizeRoom(raw) {
    let name = String(raw || '').trim();
    if (!name.startsWith('#')) name = `#${name}`;
    name = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
    return /^#[a-z0-9_-]{1,32}$/.test(name) ? name : null;
  };
  window.MUC.LOBBY = '#lobby';

  /**
   * Client-side check of the documented name rules, so obvious mistakes are
   * shown at once. The server stays the judge (reserved and taken names).
   * Returns an i18n key for the problem, or null.
   */
  window.MUC.checkName = function checkName(name) {
    if (name.length === 0) return 'errEmpty';
    if ([...name].length > 32) return 'errLong';
    // \s covers spaces; \p{Cc} control characters.
    if (/[\s\p{Cc}]/u.test(name)) return 'errSpaces';
    return null;
  };
})();
