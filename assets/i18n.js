// UI strings in English and Vietnamese, and the language switch.
//
// Markup names its strings with data attributes, so a language change can
// re-translate the whole page without knowing what is on it:
//   data-i18n="key"              → textContent
//   data-i18n-args='{"name":"x"}' → {name} placeholders in that string
//   data-i18n-placeholder="key"  → placeholder attribute
//   data-i18n-title="key"        → title attribute
//   data-i18n-aria="key"         → aria-label attribute
// Only textContent and attributes are ever written: user text never becomes markup.
'use strict';

(function () {
  const STRINGS = {
    en: {
      appName: 'MultiUserChat',
      tagline: 'Chat with everyone on this network.',
      language: 'Language',
      loginTitle: 'Join the chat',
      loginNameLabel: 'Your name',
      loginNamePlaceholder: 'e.g. alice',
      loginSubmit: 'Join',
      loginJoining: 'Joining…',
      rulesTitle: 'Name rules',
      ruleLength: '1–32 characters',
      ruleSpaces: 'no spaces or control characters',
      ruleReserved: '“Server” is reserved',
      ruleUnique: 'names are unique, ignoring upper/lower case',
      errEmpty: 'Please enter a name.',
      errLong: 'A name can have at most 32 characters.',
      errSpaces: 'A name cannot contain spaces or control characters.',
      errNameTaken: 'That name is already in use. Please pick another.',
      errNameInvalid: 'The server does not accept that name.',
      errUnreachable: 'Cannot reach the chat server. Please try again.',
      errJoinFailed: 'The server refused to join.',
      serverSaid: 'Server: {message}',
      statusConnecting: 'Connecting…',
      statusJoining: 'Joining…',
      statusOnline: 'Connected',
      statusOffline: 'Disconnected',
      statusRetryIn: 'Disconnected · reconnecting in {seconds} s',
      statusNameBusy: 'Reconnecting · name still in use, retrying',
      online: 'Online',
      you: 'you',
      pmTitle: 'Send a private message to {name}',
      messageLabel: 'Message',
      messagePlaceholder: 'Message everyone, or @name for a private message',
      offlinePlaceholder: 'Offline: messages are sent when the connection is back',
      send: 'Send',
      exit: 'Leave',
      privateTo: 'private to {name}',
      privateFrom: 'private from {name}',
      stateQueued: 'waiting for connection',
      stateSending: 'sending…',
      stateFailed: 'not delivered',
      noticeLost: 'Connection lost. Messages you write now are kept and sent when it is back.',
      noticeBack: 'Reconnected as {name}.',
      noticeLeaving: 'Leaving…',
      signedInAs: 'Signed in as',
      emptyLog: 'No messages yet. Say hello!',
      messagesTitle: 'Messages',
      errUnknownUser: 'Not delivered: that user is not online.',
      errRateLimited: 'Slow down: too many messages.',
      errTooLong: 'That message is too long.',
      errOther: 'The server refused the message.',
      usersToggle: 'Show or hide the online list and rooms',
      messagesIn: 'Messages in {room}',
      messageLabelRoom: 'Message to {room}',
      yourRooms: 'Your rooms',
      roomJoinLabel: 'Join or create a room',
      roomPlaceholder: '#room',
      roomJoin: 'Join',
      roomRule: '# and 1–32 of a–z, 0–9, _ and -, e.g. #maths',
      errRoomInvalid: 'A room name is # and 1–32 of a–z, 0–9, _ and - (no spaces or accents).',
      errRoomRefused: 'The server refused that room.',
      errRoomLimit: 'You cannot join more rooms now.',
      errRoomOffline: 'Not connected. Try again when the connection is back.',
      errNotInRoom: 'Not delivered: you are not in that room.',
      errHistoryUnavailable: 'The history of {room} cannot be read right now.',
      noticeRejoinFailed: 'Could not re-join {room}.',
      leaveRoom: 'Leave {room}',
      unreadCount: '{n} unread',
      otherUnread: '{n} unread in other rooms',
      topicLabel: 'Topic of {room}',
      topicSet: 'Set topic',
      topicNone: 'No topic',
      errTopicLong: 'A topic can have at most {max} bytes.',
      errTopicRefused: 'The server refused the topic.',
      noticeTopic: '{name} set the topic: {topic}',
      noticeTopicCleared: '{name} cleared the topic.',
      noticeLeftRoom: 'You left {room}.',
      allRooms: 'All rooms',
      refresh: 'Refresh',
      roomListLoading: 'Loading…',
      roomListTotal: '{n} rooms',
      roomListMore: 'Showing {shown} of {n} rooms',
      roomUsers: '{n} online',
      roomJoinedTag: 'joined',
      newMessages: 'New messages',
      noticeGap: 'Some messages were missed while you were away.',
    },
    vi: {
      appName: 'MultiUserChat',
      tagline: 'Trò chuyện với mọi người trong mạng này.',
      language: 'Ngôn ngữ',
      loginTitle: 'Tham gia trò chuyện',
      loginNameLabel: 'Tên của bạn',
      loginNamePlaceholder: 'ví dụ: lan',
      loginSubmit: 'Vào phòng',
      loginJoining: 'Đang vào…',
      rulesTitle: 'Quy tắc đặt tên',
      ruleLength: 'từ 1 đến 32 ký tự',
      ruleSpaces: 'không có dấu cách hay ký tự điều khiển',
      ruleReserved: 'tên “Server” đã được dành riêng',
      ruleUnique: 'tên là duy nhất, không phân biệt chữ hoa/thường',
      errEmpty: 'Vui lòng nhập tên.',
      errLong: 'Tên chỉ được dài tối đa 32 ký tự.',
      errSpaces: 'Tên không được chứa dấu cách hay ký tự điều khiển.',
      errNameTaken: 'Tên này đã có người dùng. Vui lòng chọn tên khác.',
      errNameInvalid: 'Máy chủ không chấp nhận tên này.',
      errUnreachable: 'Không kết nối được tới máy chủ. Vui lòng thử lại.',
      errJoinFailed: 'Máy chủ từ chối cho vào phòng.',
      serverSaid: 'Máy chủ: {message}',
      statusConnecting: 'Đang kết nối…',
      statusJoining: 'Đang vào phòng…',
      statusOnline: 'Đã kết nối',
      statusOffline: 'Mất kết nối',
      statusRetryIn: 'Mất kết nối · thử lại sau {seconds} giây',
      statusNameBusy: 'Đang kết nối lại · tên vẫn đang bận, đang thử lại',
      online: 'Trực tuyến',
      you: 'bạn',
      pmTitle: 'Gửi tin nhắn riêng cho {name}',
      messageLabel: 'Tin nhắn',
      messagePlaceholder: 'Nhắn cho mọi người, hoặc @tên để nhắn riêng',
      offlinePlaceholder: 'Ngoại tuyến: tin nhắn sẽ được gửi khi có kết nối lại',
      send: 'Gửi',
      exit: 'Rời phòng',
      privateTo: 'nhắn riêng tới {name}',
      privateFrom: 'nhắn riêng từ {name}',
      stateQueued: 'đang chờ kết nối',
      stateSending: 'đang gửi…',
      stateFailed: 'chưa gửi được',
      noticeLost: 'Mất kết nối. Tin nhắn bạn viết lúc này sẽ được giữ lại và gửi khi có kết nối.',
      noticeBack: 'Đã kết nối lại với tên {name}.',
      noticeLeaving: 'Đang rời phòng…',
      signedInAs: 'Đang dùng tên',
      emptyLog: 'Chưa có tin nhắn nào. Hãy chào mọi người!',
      messagesTitle: 'Tin nhắn',
      errUnknownUser: 'Chưa gửi được: người này không trực tuyến.',
      errRateLimited: 'Chậm lại một chút: bạn gửi quá nhiều tin nhắn.',
      errTooLong: 'Tin nhắn quá dài.',
      errOther: 'Máy chủ từ chối tin nhắn.',
      usersToggle: 'Hiện hoặc ẩn danh sách trực tuyến và các phòng',
      messagesIn: 'Tin nhắn trong {room}',
      messageLabelRoom: 'Tin nhắn tới {room}',
      yourRooms: 'Phòng của bạn',
      roomJoinLabel: 'Vào hoặc tạo phòng',
      roomPlaceholder: '#phong',
      roomJoin: 'Vào',
      roomRule: '# và 1–32 ký tự a–z, 0–9, _ hoặc -, ví dụ #toan',
      errRoomInvalid: 'Tên phòng là # và 1–32 ký tự a–z, 0–9, _ hoặc - (không dấu cách, không dấu).',
      errRoomRefused: 'Máy chủ từ chối phòng này.',
      errRoomLimit: 'Bạn không thể vào thêm phòng lúc này.',
      errRoomOffline: 'Chưa có kết nối. Hãy thử lại khi có kết nối.',
      errNotInRoom: 'Chưa gửi được: bạn không ở trong phòng này.',
      errHistoryUnavailable: 'Hiện không đọc được lịch sử của {room}.',
      noticeRejoinFailed: 'Không vào lại được {room}.',
      leaveRoom: 'Rời khỏi {room}',
      unreadCount: '{n} chưa đọc',
      otherUnread: '{n} tin chưa đọc ở phòng khác',
      topicLabel: 'Chủ đề của {room}',
      topicSet: 'Đặt chủ đề',
      topicNone: 'Chưa có chủ đề',
      errTopicLong: 'Chủ đề chỉ được dài tối đa {max} byte.',
      errTopicRefused: 'Máy chủ từ chối chủ đề này.',
      noticeTopic: '{name} đã đặt chủ đề: {topic}',
      noticeTopicCleared: '{name} đã xoá chủ đề.',
      noticeLeftRoom: 'Bạn đã rời {room}.',
      allRooms: 'Tất cả phòng',
      refresh: 'Làm mới',
      roomListLoading: 'Đang tải…',
      roomListTotal: '{n} phòng',
      roomListMore: 'Đang hiện {shown} trên {n} phòng',
      roomUsers: '{n} người',
      roomJoinedTag: 'đã vào',
      newMessages: 'Tin nhắn mới',
      noticeGap: 'Một số tin nhắn đã bị lỡ khi bạn vắng mặt.',
    },
  };

  const LANG_KEY = 'muc.lang';
  const listeners = [];

  function storageGet(key) {
    try { return window.localStorage.getItem(key); } catch { return null; }
  }
  function storageSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch { /* private mode: not remembered */ }
  }

  function detect() {
    const saved = storageGet(LANG_KEY);
    if (saved && STRINGS[saved]) return saved;
    const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
    for (const tag of prefs) {
      const base = String(tag).toLowerCase().split('-')[0];
      if (STRINGS[base]) return base;
    }
    return 'en';
  }

  let lang = detect();

  /** The string for `key` in the current language, with {placeholders} filled. */
  function t(key, args) {
    const table = STRINGS[lang] || STRINGS.en;
    let s = table[key] ?? STRINGS.en[key] ?? key;
    if (args) {
      s = s.replace(/\{(\w+)\}/g, (whole, name) => (name in args ? String(args[name]) : whole));
    }
    return s;
  }

  function argsOf(el) {
    const raw = el.getAttribute('data-i18n-args');
    if (!raw) return undefined;
    try { return JSON.parse(raw); } catch { return undefined; }
  }

  /** Re-translates every marked element under `root` (default: the whole document). */
  function apply(root) {
    const scope = root || document;
    const own = scope.nodeType === 1 ? [scope] : [];
    const pick = (sel) => own.filter((e) => e.matches(sel)).concat([...scope.querySelectorAll(sel)]);
    for (const el of pick('[data-i18n]')) el.textContent = t(el.getAttribute('data-i18n'), argsOf(el));
    for (const el of pick('[data-i18n-placeholder]')) el.setAttribute('placeholder', t(el.getAttribute('data-i18n-placeholder')));
    for (const el of pick('[data-i18n-title]')) el.setAttribute('title', t(el.getAttribute('data-i18n-title'), argsOf(el)));
    for (const el of pick('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.getAttribute('data-i18n-aria'), argsOf(el)));
    if (!root) {
      document.documentElement.lang = lang;
      for (const sel of document.querySelectorAll('[data-testid="langSwitch"]')) sel.value = lang;
    }
  }

  /** Marks `el` as showing string `key` (with `args`) and fills it in now. */
  function bind(el, key, args) {
    el.setAttribute('data-i18n', key);
    if (args) el.setAttribute('data-i18n-args', JSON.stringify(args));
    else el.removeAttribute('data-i18n-args');
    el.textContent = t(key, args);
    return el;
  }

  function setLang(next) {
    if (!STRINGS[next] || next === lang) return;
    lang = next;
    storageSet(LANG_KEY, next);
    apply();
    for (const fn of listeners) fn(lang);
  }

  /** Wires every language <select> in the document (call again after markup is swapped in). */
  function wireSwitches() {
    for (const sel of document.querySelectorAll('[data-testid="langSwitch"]')) {
      if (sel.dataset.wired) continue;
      sel.dataset.wired = '1';
      sel.value = lang;
      sel.addEventListener('change', () => setLang(sel.value));
    }
  }

  window.I18N = {
    t,
    apply,
    bind,
    setLang,
    wireSwitches,
    get lang() { return lang; },
    onChange(fn) { listeners.push(fn); },
    storageGet,
    storageSet,
  };

  document.addEventListener('DOMContentLoaded', () => {
    apply();
    wireSwitches();
  });
})();
