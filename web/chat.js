// SPDX-License-Identifier: LGPL-2.1-or-later
// chat.js: the page's network side: session, room list, the WebSocket and reconnecting it.

import { ChatView, backoffDelay } from './render.js';

const $ = (id) => document.getElementById(id);
const body = document.body;

let ws = null;
let attempt = 0;
let retryTimer = null;
let leaving = false;

function goLogin() {
  if (leaving) return;
  leaving = true;
  if (ws) ws.close(1000);
  location.assign('/login?next=%2F');
}

function setStatus(state, text) {
  body.dataset.connection = state;
  $('connection-status').textContent = text;
}

const view = new ChatView(document, {
  roomList: $('room-list'),
  panes: $('panes'),
  toasts: $('toasts'),
  empty: $('panes-empty'),
}, {
  send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  },
  loggedOut: goLogin,
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

async function loadSession() {
  const r = await fetchSession();
  if (r.state === 'out') return goLogin();
  if (r.state !== 'in' || !r.session || typeof r.session !== 'object') return;
  const s = r.session;
  view.setSelf({ username: typeof s.username === 'string' ? s.username : '', staff: s.staff === true });
  $('whoami').textContent = typeof s.username === 'string' ? s.username : '';
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
  setStatus('waiting', `Disconnected. Reconnecting in ${Math.ceil(delay / 1000)} s…`);
  retryTimer = setTimeout(() => {
    retryTimer = null;
    connect();
  }, delay);
}

function connect() {
  if (leaving) return;
  clearTimeout(retryTimer);
  retryTimer = null;
  setStatus('connecting', 'Connecting…');
  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/chat/stream/`;
  let opened = false;
  let heard = false;
  const sock = new WebSocket(url);
  ws = sock;
  sock.addEventListener('open', () => {
    opened = true;
    view.setConnected(true);
    setStatus('open', 'Connected');
    view.rejoinAll();
    // The page may have loaded while the server was down.
    if (view.self === null) loadSession();
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
    view.handleEvent(ev);
  });
  sock.addEventListener('close', async (e) => {
    if (ws !== sock) return;
    ws = null;
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

// Navigating away (logout, reload) closes the socket; that is not a disconnect to recover from.
$('logout-form').addEventListener('submit', () => {
  leaving = true;
});
window.addEventListener('pagehide', () => {
  leaving = true;
});

window.addEventListener('online', () => {
  if (retryTimer !== null) connect();
});

setStatus('connecting', 'Connecting…');
loadSession();
loadRooms();
connect();
