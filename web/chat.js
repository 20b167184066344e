// SPDX-License-Identifier: LGPL-2.1-or-later
// chat.js: the page's network side and browser glue: session, the WebSocket and reconnecting it, the protocol version, notifications, keys.

import { h } from './dom.js';
import { backoffDelay } from './render.js';
import { ChatView } from './chatview.js';
import { Store } from './store.js';

const $ = (id) => document.getElementById(id);
const body = document.body;
const HELLO_MS = 5000;
const APP = 'multichat';

let ws = null;
let attempt = 0;
let retryTimer = null;
let leaving = false;
let helloRef = null;
let helloTimer = null;
let offlineSince = null;

function goLogin() {
  if (leaving) return;
  leaving = true;
  if (ws) ws.close(1000);
  location.assign('/login?next=%2F');
}

function setStatus(state, text) {
  body.dataset.connection = state;
  $('connection-status').textContent = text;
  const offline = state !== 'open' && offlineSince !== null;
  $('offline-banner').hidden = !offline;
}

function localStore() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

function canNotify() {
  return typeof Notification === 'function';
}

function updatePermissionButton() {
  $('notify-permission').hidden = !canNotify() || Notification.permission !== 'default';
}

// Asked only when the user asks for notifications (the button, or a room's bell), never on load.
async function askNotify() {
  if (!canNotify() || Notification.permission !== 'default') return;
  try {
    await Notification.requestPermission();
  } catch {
    // Older browsers take a callback instead; without a promise, nothing changes.
  }
  updatePermissionButton();
}

function notify(title, text, room) {
  if (!canNotify() || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(title, { body: text.slice(0, 200), tag: `${APP}-room-${room}`, icon: '/static/favicon.svg' });
    n.addEventListener('click', () => {
      window.focus();
      view.select(room, { focus: true, show: true });
      n.close();
    });
  } catch {
    // Some platforms only allow notifications from a service worker: the badges remain.
  }
}

const view = new ChatView(document, {
  joinedList: $('joined-list'),
  roomList: $('room-list'),
  browseHeading: $('browse-heading'),
  conversation: $('conversation'),
  toasts: $('toasts'),
  empty: $('conversation-empty'),
  live: $('live'),
}, {
  send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  },
  loggedOut: goLogin,
  notify,
  askNotify,
  setTitle(unread, mentions) {
    const n = unread > 0 ? `(${unread > 999 ? '999+' : unread}${mentions > 0 ? ' @' : ''}) ` : '';
    document.title = `${n}${APP}`;
  },
  view(name) {
    body.dataset.view = name;
  },
});

// 'in' logged in, 'out' logged out, 'down' the server could not be asked.
async function fetchSession() {
  let res;
  try {
    res = await fetch('/api/session', { credentials: 'same-origin', redirect: 'manual', cache: 'no-store', headers: { Accept: 'application/json' } });
  } catch {
    return { state: 'down' };
  }
  if (res.type === 'opaqueredirect' || res.status === 401 || res.status === 403) return { state: 'out' };
  if (!res.ok) return { state: 'down' };
  try {
    return { state: 'in', session: await res.json() };
  } catch {
    return { state: 'down' };
  }
}

let sessionReady = null;

async function loadSession() {
  const r = await fetchSession();
  if (r.state === 'out') return goLogin();
  if (r.state !== 'in' || !r.session || typeof r.session !== 'object') return;
  const s = r.session;
  const username = typeof s.username === 'string' ? s.username : '';
  if (view.self === null) {
    view.setSelf({ username, staff: s.staff === true }, new Store(localStore(), username));
    view.restore();
  }
  $('whoami').textContent = username;
  body.classList.toggle('is-staff', s.staff === true);
  if (typeof s.csrf === 'string') $('logout-csrf').value = s.csrf;
}

async function loadRooms() {
  try {
    const res = await fetch('/api/rooms', { credentials: 'same-origin', redirect: 'manual', cache: 'no-store', headers: { Accept: 'application/json' } });
    if (!res.ok) return;
    const data = await res.json();
    // The pushed list is newer if it already arrived.
    if (data && view.rooms.length === 0) view.setRooms(data.rooms);
  } catch {
    // The pushed {"rooms": [...]} event covers this.
  }
}

function scheduleReconnect() {
  if (leaving || retryTimer !== null) return;
  const delay = backoffDelay(attempt++);
  offlineSince ??= Date.now();
  setStatus('waiting', `Disconnected. Reconnecting in ${Math.ceil(delay / 1000)} s…`);
  retryTimer = setTimeout(() => {
    retryTimer = null;
    connect();
  }, delay);
}

// Version 2 if the server answers hello so, else version 1 (the first release answers BAD_REQUEST).
function negotiated(version) {
  clearTimeout(helloTimer);
  helloTimer = null;
  helloRef = null;
  if (version === 2) return;
  view.proto = 1;
  view.rejoinAll();
}

function onFrame(sock, ev) {
  if (ev && typeof ev === 'object' && helloRef !== null) {
    if (ev.hello !== undefined) {
      view.handleEvent(ev);
      return negotiated(ev.hello === 2 ? 2 : 1);
    }
    if (ev.error !== undefined && ev.ref === helloRef) return negotiated(1);
  }
  return view.handleEvent(ev);
}

function connect() {
  if (leaving) return;
  clearTimeout(retryTimer);
  retryTimer = null;
  if (offlineSince === null) setStatus('connecting', 'Connecting…');
  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/chat/stream/`;
  let opened = false;
  let heard = false;
  const sock = new WebSocket(url);
  ws = sock;
  sock.addEventListener('open', async () => {
    opened = true;
    // The page may have loaded while the server was down.
    if (view.self === null) await (sessionReady = loadSession());
    else await sessionReady;
    if (ws !== sock) return;
    view.setConnected(true);
    offlineSince = null;
    setStatus('open', 'Connected');
    helloRef = `hello-${Date.now().toString(36)}`;
    sock.send(JSON.stringify({ command: 'hello', version: 2, since: view.helloSince(), ref: helloRef }));
    helloTimer = setTimeout(() => negotiated(1), HELLO_MS);
  });
  sock.addEventListener('message', (e) => {
    if (!heard) {
      // Only a connection that works resets the backoff, so a server that
      // accepts and drops at once is not hammered.
      heard = true;
      attempt = 0;
    }
    let ev;
    try {
      ev = JSON.parse(e.data);
    } catch {
      return;
    }
    onFrame(sock, ev);
  });
  sock.addEventListener('close', async (e) => {
    if (ws !== sock) return;
    ws = null;
    clearTimeout(helloTimer);
    helloRef = null;
    view.setConnected(false);
    if (e.code === 4001) return goLogin();
    if (!opened) {
      // A refused handshake looks like any network failure to a page; ask
      // whether the session is still valid before retrying.
      const r = await fetchSession();
      if (r.state === 'out') return goLogin();
    }
    scheduleReconnect();
  });
}

// --- keys and the room switcher -------------------------------------------

function renderSwitcher() {
  const list = $('switcher-list');
  const rooms = view.switcherRooms($('switcher-input').value).slice(0, 50);
  list.replaceChildren(...rooms.map((r) => h(document, 'li', {},
    h(document, 'button', {
      type: 'button', class: 'switcher-room', dataset: { roomId: r.id },
      text: r.joined ? r.title : `${r.title} (join)`,
      onclick: () => pickRoom(r),
    }))));
  if (rooms.length === 0) list.append(h(document, 'li', { class: 'room-list-empty', text: 'No room matches.' }));
}

function pickRoom(r) {
  $('switcher').close();
  if (r.joined) view.select(r.id, { focus: true, show: true });
  else view.join(r.id);
}

function openSwitcher() {
  const dlg = $('switcher');
  if (dlg.open) return;
  $('switcher-input').value = '';
  renderSwitcher();
  dlg.showModal();
  $('switcher-input').focus();
}

$('switcher-input').addEventListener('input', renderSwitcher);
$('switcher-input').addEventListener('keydown', (e) => {
  if (e.key !== 'Enter') return;
  e.preventDefault();
  const first = view.switcherRooms($('switcher-input').value)[0];
  if (first) pickRoom(first);
});

document.addEventListener('keydown', (e) => {
  if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
    e.preventDefault();
    view.move(e.key === 'ArrowUp' ? -1 : 1);
  } else if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === 'k' || e.key === 'K')) {
    e.preventDefault();
    openSwitcher();
  }
});

// --- page lifecycle ---------------------------------------------------------

// Navigating away (logout, reload) closes the socket; that is not a disconnect to recover from.
$('logout-form').addEventListener('submit', () => {
  leaving = true;
});
window.addEventListener('pagehide', () => {
  leaving = true;
});
window.addEventListener('pageshow', (e) => {
  if (e.persisted) {
    leaving = false;
    if (!ws) connect();
  }
});

window.addEventListener('online', () => {
  if (retryTimer !== null) connect();
});
window.addEventListener('offline', () => {
  // The browser knows the network is gone before the socket does.
  offlineSince ??= Date.now();
  if (ws) ws.close(4000, 'offline');
});
$('reconnect-now').addEventListener('click', () => {
  attempt = 0;
  connect();
});
$('notify-permission').addEventListener('click', askNotify);
document.addEventListener('visibilitychange', () => view.seenCurrent());
window.addEventListener('storage', (e) => {
  if (e.key === null || (view.store && e.key.startsWith(view.store.key('')))) view.syncFromStore();
});
window.addEventListener('focus', () => view.seenCurrent());

updatePermissionButton();
setStatus('connecting', 'Connecting…');
sessionReady = loadSession();
loadRooms();
connect();
