// SPDX-License-Identifier: LGPL-2.1-or-later
// render.test.mjs: unit tests of the page's modules (web/*.js) and static checks of the web files, under node:test + jsdom.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { JSDOM } from 'jsdom';
import {
  WINDOW, backoffDelay, compareIds, dayLabel, errorText, renderMessage, renderNotice,
} from '../../web/render.js';
import { ChatView } from '../../web/chatview.js';
import { mentionsIn, renderText, safeUrl } from '../../web/markup.js';
import { Store } from '../../web/store.js';

const WEB = fileURLToPath(new URL('../../web/', import.meta.url));
const XSS = '<img src=x onerror=alert(1)>';

function newDoc() {
  return new JSDOM('<!DOCTYPE html><body><ul id="joined"></ul><ul id="rooms"></ul><main id="conv"><p id="empty"></p></main><ul id="toasts"></ul><div id="live"></div></body>',
    { url: 'http://localhost/', pretendToBeVisual: true }).window.document;
}

// A ChatView over a fake transport that records the commands it sends.
function newChat({ connected = true, username = 'alice', doc = newDoc(), store = null } = {}) {
  const sent = [];
  const state = { loggedOut: 0, up: connected, notes: [], title: null };
  const chat = new ChatView(doc, {
    joinedList: doc.getElementById('joined'),
    roomList: doc.getElementById('rooms'),
    conversation: doc.getElementById('conv'),
    toasts: doc.getElementById('toasts'),
    empty: doc.getElementById('empty'),
    live: doc.getElementById('live'),
  }, {
    send(obj) {
      if (!state.up) return false;
      sent.push(obj);
      return true;
    },
    loggedOut() {
      state.loggedOut++;
    },
    notify(title, body, room) {
      state.notes.push({ title, body, room });
    },
    setTitle(unread, mentions) {
      state.title = [unread, mentions];
    },
  });
  chat.setSelf({ username, staff: false }, store);
  chat.setConnected(connected);
  return { doc, chat, sent, state };
}

const msg = (id, extra = {}) => ({ msg_type: 0, room: '1', username: 'bob', message: `m${id}`, id: String(id), ts: 1700000000000, ...extra });
const ids = (view) => [...view.messagesEl.children].filter((li) => li.dataset.id !== undefined).map((li) => li.dataset.id);
const texts = (view) => [...view.messagesEl.querySelectorAll('.msg-text')].map((e) => e.textContent);
const li = (view, id) => view.renderedLi(String(id));
const last = (view) => view.messagesEl.lastElementChild;
const sends = (t) => t.sent.filter((c) => c.command === 'send');

function joined(t, { id = '1', title = 'Lobby', history = [], ...rest } = {}) {
  t.chat.handleEvent({ join: id, title, staff_only: false, members: ['alice', 'bob'], history, ...rest });
  return t.chat.views.get(id);
}

test('a message with markup in username and text stays text', () => {
  const doc = newDoc();
  const el = renderMessage(doc, { msg_type: 0, room: '1', username: XSS, message: XSS, id: '1', ts: 1 });
  assert.equal(el.querySelector('img'), null);
  assert.equal(el.querySelector('.msg-user').textContent, XSS);
  assert.equal(el.querySelector('.msg-text').textContent, XSS);
});

test('formatting: bold, italic, code, code blocks, quotes, built as elements', () => {
  const doc = newDoc();
  const box = doc.createElement('div');
  box.append(renderText(doc, '**b** *i* _u_ `c <b>` snake_case_name 2*3*4\n```\nx <i>y</i>\n**not bold**\n```\n> quoted **q**\nafter'));
  assert.equal(box.querySelector('strong').textContent, 'b');
  assert.deepEqual([...box.querySelectorAll('em')].map((e) => e.textContent), ['i', 'u']);
  assert.equal(box.querySelector('.msg-para code').textContent, 'c <b>');
  assert.equal(box.querySelector('pre.msg-code code').textContent, 'x <i>y</i>\n**not bold**');
  assert.equal(box.querySelector('blockquote').textContent, 'quoted q');
  assert.equal(box.querySelector('blockquote strong').textContent, 'q');
  assert.ok(box.textContent.includes('snake_case_name 2*3*4'), 'underscores inside words and lone stars stay');
  assert.equal(box.querySelectorAll('b, i, img, script').length, 0);
  // Deep nesting is bounded, and what is not parsed stays text.
  const deep = doc.createElement('div');
  deep.append(renderText(doc, '**_*'.repeat(50) + 'x' + '*_**'.repeat(50)));
  const depth = (e) => (e.parentElement && e.parentElement !== deep ? 1 + depth(e.parentElement) : 1);
  assert.ok(Math.max(0, ...[...deep.querySelectorAll('strong, em')].map(depth)) <= 3);
  assert.ok(deep.textContent.includes('x'));
});

test('links: http(s) only, noopener noreferrer, punctuation after a link is not part of it', () => {
  const doc = newDoc();
  const box = doc.createElement('div');
  box.append(renderText(doc, 'see https://example.org/a_(b)?c=1&d=2. (http://x.test/p) javascript:alert(1) data:text/html,x ftp://f.test www.example.org xhttps://no.test'));
  const links = [...box.querySelectorAll('a')];
  assert.deepEqual(links.map((a) => a.getAttribute('href')), ['https://example.org/a_(b)?c=1&d=2', 'http://x.test/p']);
  for (const a of links) {
    assert.equal(a.getAttribute('rel'), 'noopener noreferrer');
    assert.equal(a.getAttribute('target'), '_blank');
  }
  assert.equal(safeUrl('javascript:alert(1)'), null);
  assert.equal(safeUrl('https://ok.test/'), 'https://ok.test/');
  assert.equal(safeUrl('http://[bad'), null);
});

test('mentions: the protocol rule, highlighted for the reader', () => {
  assert.deepEqual(mentionsIn('@bob hi @carol.smith, @bob again; alice@example.org @-x @@eve (@dave).'), ['bob', 'carol.smith', 'dave']);
  assert.deepEqual(mentionsIn('@a '.repeat(5) + Array.from({ length: 30 }, (_, i) => `@u${i}`).join(' ')).length, 20);
  const doc = newDoc();
  const box = doc.createElement('div');
  box.append(renderText(doc, 'hey @alice and @bob', { self: 'alice' }));
  assert.deepEqual([...box.querySelectorAll('.mention')].map((e) => e.textContent), ['@alice', '@bob']);
  assert.equal(box.querySelector('.mention-me').textContent, '@alice');
});

test('room titles with markup stay text, in the lists and in the conversation', () => {
  const t = newChat();
  t.chat.handleEvent({ rooms: [{ id: '1', title: XSS, staff_only: true }, { id: '2', title: 'Lobby', staff_only: false }] });
  const list = t.doc.getElementById('rooms');
  assert.equal(list.querySelector('img'), null);
  assert.deepEqual([...list.querySelectorAll('.room-name')].map((e) => e.textContent), [XSS, 'Lobby']);
  assert.ok(list.querySelector('.browse-room.staff-only .badge-staff'));
  assert.equal(list.querySelector('button[data-room-id="1"]'), null, 'no Join button for a staff-only room');
  assert.equal(list.querySelector('button[data-room-id="2"]').getAttribute('aria-label'), 'Join Lobby');
  t.chat.setSelf({ username: 'alice', staff: true });
  t.chat.renderBrowse();
  assert.equal(list.querySelector('button[data-room-id="1"]').getAttribute('aria-label'), `Join ${XSS}`);

  joined(t, { id: '1', title: XSS, staff_only: true, members: [XSS] });
  const pane = t.doc.querySelector('.room-pane[data-room-id="1"]');
  assert.equal(t.doc.querySelector('img'), null);
  assert.equal(pane.querySelector('.room-title').textContent, XSS);
  assert.equal(pane.querySelector('.member').textContent, XSS);
  assert.equal(pane.querySelector('.badge-staff').hidden, false);
  assert.equal(t.doc.querySelector('#joined .room-name').textContent, XSS);
});

test('notices with markup stay text and carry their kind', () => {
  const t = newChat();
  const view = joined(t);
  const kinds = { 1: 'notice-warning', 2: 'notice-alert', 3: 'notice-muted' };
  for (const type of [1, 2, 3]) {
    view.addEvent({ msg_type: type, room: '1', message: XSS });
    assert.ok(last(view).classList.contains(kinds[type]), `msg_type ${type}`);
    assert.equal(last(view).querySelector('.notice-text').textContent, XSS);
  }
  view.addEvent({ msg_type: 4, room: '1', username: XSS });
  assert.ok(last(view).classList.contains('notice-enter'));
  assert.equal(last(view).querySelector('.msg-user').textContent, XSS);
  assert.ok(view.memberEl(XSS), 'entering user is listed as a member');
  view.addEvent({ msg_type: 5, room: '1', username: XSS });
  assert.ok(last(view).classList.contains('notice-leave'));
  assert.equal(view.memberEl(XSS), null, 'leaving user is no longer a member');
  t.chat.handleEvent({ typing: XSS, room: '1' });
  assert.equal(view.typingEl.textContent, `${XSS} is typing…`);
  assert.equal(view.root.querySelector('img'), null);
  assert.equal(renderNotice(t.doc, { msg_type: 9, message: XSS }).querySelector('img'), null);
});

test('a large room shows a page of members and its count, and pages on request', () => {
  const t = newChat();
  const first = Array.from({ length: 100 }, (_, i) => `u${String(i).padStart(3, '0')}`);
  const view = joined(t, { members: first, member_count: 150 });
  const names = () => [...view.membersEl.children].map((li) => li.textContent);
  assert.equal(names().length, 100);
  assert.equal(view.membersSummary.textContent, '150 members');
  assert.equal(view.membersMoreBtn.hidden, false);
  assert.equal(view.membersMoreBtn.textContent, 'Show more (50)');

  view.membersMoreBtn.click();
  view.membersMoreBtn.click();            // one request at a time
  const asked = t.sent.filter((c) => c.command === 'members');
  assert.equal(asked.length, 1);
  assert.equal(asked[0].room, '1');
  assert.equal(asked[0].after, 'u099');

  const rest = Array.from({ length: 50 }, (_, i) => `u${100 + i}`);
  t.chat.handleEvent({ members: rest, room: '1', more: false, ref: asked[0].ref });
  assert.equal(names().length, 150);
  assert.equal(view.membersSummary.textContent, '150 members');
  assert.equal(view.membersMoreBtn.hidden, true);

  // A large room's count comes instead of entered/left notices.
  t.chat.handleEvent({ member_count: 4321, room: '1' });
  assert.equal(view.membersSummary.textContent, '4321 members');
  assert.equal(view.membersMoreBtn.hidden, false);
  t.chat.handleEvent({ member_count: -1, room: '1' });
  assert.equal(view.membersSummary.textContent, '150 members', 'a nonsense count falls back to the list');
  t.chat.handleEvent({ member_count: 7, room: '99' });

  // A small room: the list is everyone; notices keep it and the count.
  const small = joined(t, { id: '2', members: ['alice', 'bob'], member_count: 2 });
  small.addEvent({ msg_type: 4, room: '2', username: 'carol' });
  assert.equal(small.membersSummary.textContent, '3 members');
  small.addEvent({ msg_type: 5, room: '2', username: 'alice' });
  assert.equal(small.membersSummary.textContent, '2 members');
  assert.equal(small.membersMoreBtn.hidden, true);
});

test('error codes with markup stay text and never use alert()', () => {
  const t = newChat();
  t.doc.defaultView.alert = () => assert.fail('alert() called');
  t.chat.handleEvent({ error: XSS });
  t.chat.handleEvent({ error: 'ROOM_INVALID' });
  const toasts = t.doc.getElementById('toasts');
  assert.equal(toasts.querySelector('img'), null);
  const shown = [...toasts.querySelectorAll('.toast-text')].map((e) => e.textContent);
  assert.deepEqual(shown, [`Error: ${XSS}`, errorText('ROOM_INVALID')]);
  assert.equal(errorText('toString'), 'Error: toString');
});

test('own messages are marked and get edit/delete that name the message; others are not', () => {
  const t = newChat();
  const view = joined(t);
  view.addEvent(msg(1, { username: 'alice', own: true, message: 'hello there' }));
  view.addEvent(msg(2));
  view.addEvent(msg(3, { own: 'true' }));
  const mine = li(view, 1);
  assert.ok(mine.classList.contains('own'));
  assert.ok(mine.querySelector('.msg-own-tag'));
  assert.match(mine.querySelector('button.msg-edit').getAttribute('aria-label'), /^Edit your message from \d\d:\d\d: hello there$/);
  assert.match(mine.querySelector('button.msg-delete').getAttribute('aria-label'), /^Delete your message from \d\d:\d\d: hello there$/);
  for (const other of [li(view, 2), li(view, 3)]) {
    assert.ok(!other.classList.contains('own'));
    assert.equal(other.querySelector('.msg-own-tag'), null);
    assert.equal(other.querySelector('button'), null);
  }
});

test('history on join is shown in order, and a replay after reconnect merges without duplicates', () => {
  const t = newChat();
  const view = joined(t, { history: [msg('1000-0'), msg('1000-1'), msg('1001-0')] });
  assert.deepEqual(ids(view), ['1000-0', '1000-1', '1001-0']);
  view.addEvent(msg('1002-0'));
  assert.equal(view.lastId, '1002-0');

  // Connection drops; on reconnect the page re-joins with since = last id seen.
  t.chat.setConnected(false);
  t.chat.setConnected(true);
  t.sent.length = 0;
  t.chat.rejoinAll();
  assert.deepEqual(t.sent.map(({ ref, ...c }) => c), [{ command: 'join', room: '1', since: '1002-0' }]);

  joined(t, { history: [msg('1001-0'), msg('1002-0'), msg('1003-0'), msg('1003-0'), msg('1004-0')] });
  assert.equal(t.chat.views.get('1'), view);
  assert.equal(t.doc.querySelectorAll('.room-pane').length, 1);
  assert.deepEqual(ids(view), ['1000-0', '1000-1', '1001-0', '1002-0', '1003-0', '1004-0']);
});

test('an edited message in the history on join is shown, marked edited', () => {
  const t = newChat();
  const view = joined(t, { history: [msg('1-0'), msg('2-0', { message: 'changed', edited: true }), msg('3-0')] });
  assert.deepEqual(ids(view), ['1-0', '2-0', '3-0']);
  assert.equal(li(view, '2-0').querySelector('.msg-edited').hidden, false);
  assert.equal(li(view, '2-0').querySelector('.msg-text').textContent, 'changed');
  // And in an older page of history.
  view.applyHistory({ history: [msg('0-5', { edited: true })], room: '1', complete: true });
  assert.ok(view.byId.get('0-5'));
});

test('a gap larger than the server keeps is announced', () => {
  const t = newChat();
  const view = joined(t, { history: [msg('5-0')] });
  joined(t, { history: [msg('90-0')], complete: false });
  assert.equal(view.messagesEl.querySelectorAll('.notice-local').length, 1);
  assert.deepEqual(ids(view), ['5-0', '90-0']);
});

test('message ids order numerically, stream ids by both parts', () => {
  assert.ok(compareIds('999-0', '1000-0') < 0);
  assert.ok(compareIds('1000-10', '1000-9') > 0);
  assert.ok(compareIds('9', '10') < 0);
  assert.equal(compareIds('1000-1', '1000-1'), 0);
  assert.ok(compareIds('18446744073709551615-0', '18446744073709551616-0') < 0);
  const t = newChat();
  const view = joined(t);
  for (const id of ['10-0', '30-0', '20-0', '5-0', '30-0']) view.addEvent(msg(id));
  assert.deepEqual(ids(view), ['5-0', '10-0', '20-0', '30-0']);
});

test('an edit re-sent with the same id updates the message in place', () => {
  const t = newChat();
  const view = joined(t, { history: [msg(1), msg(2)] });
  t.chat.handleEvent(msg(1, { message: `new ${XSS}`, edited: true }));
  assert.deepEqual(texts(view), [`new ${XSS}`, 'm2']);
  assert.ok(li(view, 1).classList.contains('edited'));
  assert.equal(li(view, 1).querySelector('.msg-edited').hidden, false);
  assert.equal(li(view, 2).querySelector('.msg-edited').hidden, true);
  assert.equal(view.root.querySelector('img'), null);
  // A plain duplicate does not undo it; a live edit of a message older than all we hold is ignored.
  t.chat.handleEvent(msg(1));
  t.chat.handleEvent(msg(0, { edited: true }));
  assert.deepEqual(texts(view), [`new ${XSS}`, 'm2']);
  t.chat.handleEvent(msg(7, { room: '2' }));
  assert.equal(ids(view).length, 2);
});

test('a deletion replaces the message, and a later replay does not bring it back', () => {
  const t = newChat();
  const view = joined(t, { history: [msg(1), msg(2)] });
  t.chat.handleEvent({ deleted: '1', room: '1' });
  assert.ok(li(view, 1).classList.contains('deleted'));
  assert.equal(li(view, 1).querySelector('.msg-text'), null);
  assert.ok(!li(view, 1).textContent.includes('m1'));
  joined(t, { history: [msg(1), msg(2), msg(3)] });
  assert.deepEqual(texts(view), ['m2', 'm3']);
});

test('edit and delete send commands for their own message; Esc cancels; focus returns to the composer', () => {
  const t = newChat();
  const view = joined(t);
  view.addEvent(msg('7-0', { username: 'alice', own: true }));
  li(view, '7-0').querySelector('.msg-edit').click();
  const input = li(view, '7-0').querySelector('.msg-edit-input');
  assert.equal(input.value, 'm7-0');
  input.value = 'changed';
  input.dispatchEvent(new t.doc.defaultView.KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
  assert.equal(t.doc.activeElement, view.input);
  assert.equal(view.root.querySelector('.msg-edit-form'), null);
  li(view, '7-0').querySelector('.msg-edit').click();
  li(view, '7-0').querySelector('.msg-edit-input').dispatchEvent(new t.doc.defaultView.KeyboardEvent('keydown', { key: 'Escape', bubbles: true, cancelable: true }));
  assert.equal(view.root.querySelector('.msg-edit-form'), null);
  const del = li(view, '7-0').querySelector('.msg-delete');
  del.click();
  assert.equal(t.sent.filter((c) => c.command === 'delete').length, 0, 'first click only asks to confirm');
  del.click();
  assert.equal(t.doc.activeElement, view.input);
  const cmds = t.sent.filter((c) => c.command === 'edit' || c.command === 'delete');
  assert.deepEqual(cmds.map(({ ref, ...c }) => c), [
    { command: 'edit', room: '1', id: '7-0', message: 'changed' },
    { command: 'delete', room: '1', id: '7-0' },
  ]);
});

test('↑ in an empty composer edits the last own message', () => {
  const t = newChat();
  const view = joined(t, { history: [msg('1-0', { own: true, username: 'alice', message: 'mine' }), msg('2-0')] });
  const key = (k) => view.input.dispatchEvent(new t.doc.defaultView.KeyboardEvent('keydown', { key: k, bubbles: true, cancelable: true }));
  view.input.value = 'typing';
  key('ArrowUp');
  assert.equal(view.root.querySelector('.msg-edit-form'), null, 'not while the composer has text');
  view.input.value = '';
  key('ArrowUp');
  assert.equal(li(view, '1-0').querySelector('.msg-edit-input').value, 'mine');
});

test('Enter sends, Shift+Enter does not, empty messages are not sent', () => {
  const t = newChat();
  const view = joined(t);
  const key = (opts) => view.input.dispatchEvent(new t.doc.defaultView.KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true, ...opts }));
  view.input.value = '   ';
  key({});
  view.input.value = 'line one';
  key({ shiftKey: true });
  assert.equal(sends(t).length, 0);
  key({});
  assert.deepEqual(sends(t).map(({ ref, ...c }) => c), [{ command: 'send', room: '1', message: 'line one' }]);
  assert.equal(view.input.value, '');
});

test('a refused send gives the text back and names the room', () => {
  const t = newChat();
  const view = joined(t);
  view.input.value = 'x'.repeat(10);
  view.submit();
  t.chat.handleEvent({ error: 'MESSAGE_TOO_LONG', ref: sends(t).at(-1).ref });
  assert.equal(view.input.value, 'x'.repeat(10));
  assert.equal(view.outboxEl.children.length, 0);
  assert.equal(t.doc.querySelector('.toast-text').textContent, `Lobby: ${errorText('MESSAGE_TOO_LONG')}`);
});

test('offline sends wait in the outbox and go once, with their ref, after the room is joined again', () => {
  const t = newChat();
  const view = joined(t);
  t.state.up = false;
  t.chat.setConnected(false);
  view.input.value = 'queued one';
  view.submit();
  view.input.value = 'queued two';
  view.submit();
  assert.equal(sends(t).length, 0);
  assert.equal(view.outboxEl.querySelectorAll('li.pending').length, 2);
  t.state.up = true;
  t.chat.setConnected(true);
  t.chat.rejoinAll();
  assert.equal(sends(t).length, 0, 'not before the room is joined again');
  joined(t);
  assert.deepEqual(sends(t).map((c) => c.message), ['queued one', 'queued two']);
  const refs = sends(t).map((c) => c.ref);
  joined(t);
  assert.equal(sends(t).length, 2, 'a second join reply sends nothing again');
  // Unacknowledged when the connection drops: sent again with the same ref.
  t.chat.handleEvent({ ok: true, id: '5-0', ref: refs[0] });
  assert.equal(view.outboxEl.children.length, 1);
  t.chat.setConnected(false);
  t.chat.setConnected(true);
  t.chat.rejoinAll();
  joined(t);
  assert.deepEqual(sends(t).map((c) => c.ref), [...refs, refs[1]]);
});

test('switching rooms keeps both joined; one conversation is shown', () => {
  const t = newChat();
  t.chat.handleEvent({ rooms: [{ id: '1', title: 'Lobby' }, { id: '2', title: 'Random' }] });
  t.doc.querySelector('#rooms button[data-room-id="1"]').click();
  assert.equal(t.doc.querySelector('#rooms button[data-room-id="1"]').getAttribute('aria-busy'), 'true');
  joined(t, { id: '1' });
  t.chat.join('2');
  joined(t, { id: '2', title: 'Random' });
  const pane = (id) => t.doc.querySelector(`.room-pane[data-room-id="${id}"]`);
  assert.equal(pane('1').hidden, true);
  assert.equal(pane('2').hidden, false);
  t.doc.querySelector('#joined button[data-room-id="1"]').click();
  assert.equal(pane('1').hidden, false);
  assert.equal(pane('2').hidden, true);
  assert.equal(t.sent.filter((c) => c.command === 'leave').length, 0);
  assert.equal(t.doc.querySelector('#joined button[aria-current="true"]').dataset.roomId, '1');
  t.chat.move(1);
  assert.equal(t.chat.currentId, '2');
  t.chat.move(1);
  assert.equal(t.chat.currentId, '1');
  pane('1').querySelector('.room-leave').click();
  assert.deepEqual(t.sent.at(-1).command, 'leave');
  assert.equal(pane('1'), null);
  assert.equal(t.chat.currentId, '2');
  assert.ok(t.doc.querySelector('#rooms button[data-room-id="1"]'), 'the left room is back in the list');

  t.state.up = false;
  t.chat.setConnected(false);
  const before = t.sent.length;
  t.doc.querySelector('#rooms button[data-room-id="1"]').click();
  assert.equal(t.sent.length, before);
  assert.ok(t.doc.querySelector('.toast-error'));
});

test('unread counts, mentions, the title and notifications follow messages in other rooms', () => {
  const t = newChat();
  joined(t, { id: '1' });
  joined(t, { id: '2', title: 'Random' });
  t.chat.select('1');
  t.chat.handleEvent(msg('10-0', { room: '2' }));
  t.chat.handleEvent(msg('11-0', { room: '2', message: 'ping @alice' }));
  t.chat.handleEvent(msg('12-0', { room: '2', username: 'alice', own: true }));
  const btn = t.doc.querySelector('#joined button[data-room-id="2"]');
  assert.equal(btn.querySelector('.unread-badge').textContent, '2');
  assert.equal(btn.querySelector('.mention-mark').hidden, false);
  assert.equal(btn.getAttribute('aria-label'), 'Random, 2 unread, 1 mention');
  assert.deepEqual(t.state.title, [2, 1]);
  assert.deepEqual(t.state.notes, [{ title: 'bob mentioned you in Random', body: 'ping @alice', room: '2' }]);
  // Notifications for every message of a room, when asked for.
  t.chat.toggleNotify('2');
  t.chat.handleEvent(msg('13-0', { room: '2', message: 'plain' }));
  assert.equal(t.state.notes.length, 2);
  // Opening the room: the divider sits before the first unread message, and the count clears.
  t.chat.select('2');
  const view = t.chat.views.get('2');
  assert.equal(view.messagesEl.querySelector('.new-divider').nextElementSibling.dataset.id, '10-0');
  assert.equal(view.messagesEl.querySelectorAll('.new-divider').length, 1);
  assert.equal(btn.isConnected ? btn.querySelector('.unread-badge').hidden : true, true);
  assert.deepEqual(t.state.title, [0, 0]);
  // The one live region hears about new messages in the open room.
  t.chat.handleEvent(msg('14-0', { room: '2', message: 'live one' }));
  return new Promise((resolve) => setTimeout(() => {
    assert.equal(t.doc.getElementById('live').textContent, 'bob: live one');
    resolve();
  }, 700));
});

test('day separators mark each new day', () => {
  const t = newChat();
  const day = 86400000;
  const now = Date.now();
  const view = joined(t, { history: [msg('1-0', { ts: now - 3 * day }), msg('2-0', { ts: now - 3 * day + 1000 }), msg('3-0', { ts: now - day }), msg('4-0', { ts: now })] });
  const seps = [...view.messagesEl.querySelectorAll('.day-separator')].map((e) => e.textContent);
  assert.equal(seps.length, 3);
  assert.deepEqual(seps.slice(1), ['Yesterday', 'Today']);
  assert.equal(dayLabel(now), 'Today');
});

test('a long room keeps a bounded window in the DOM and pages older history', () => {
  const t = newChat();
  const history = Array.from({ length: 50 }, (_, i) => msg(`${1000 + i}-0`));
  const view = joined(t, { history });
  for (let i = 0; i < 2000; i++) t.chat.handleEvent(msg(`${5000 + i}-0`));
  assert.equal(view.entries.length, 2050);
  assert.ok(view.messagesEl.children.length <= WINDOW + 60, `${view.messagesEl.children.length} nodes`);
  assert.equal(ids(view).at(-1), '6999-0');
  // Scrolled to the top of what is in memory: the window moves up, then older history is asked for.
  const check = () => {
    // The window in the DOM is exactly entries[winStart, winEnd), in order.
    assert.deepEqual(ids(view), view.entries.slice(view.winStart, view.winEnd).map((e) => e.id));
    assert.ok(view.messagesEl.children.length <= WINDOW + 60);
  };
  while (view.winStart > 0) {
    view.shiftWindow(-50);
    check();
  }
  view.shiftWindow(120);
  check();
  view.shiftWindow(-70);
  check();
  view.shiftWindow(-500);
  assert.equal(ids(view)[0], '1000-0');
  assert.ok(view.messagesEl.children.length <= WINDOW + 60);
  t.sent.length = 0;
  view.checkScroll();
  assert.deepEqual(t.sent.map(({ ref, ...c }) => c), [{ command: 'history', room: '1', before: '1000-0', limit: 100 }]);
  t.chat.handleEvent({ history: [msg('900-0'), msg('901-0')], room: '1', complete: true, ref: t.sent[0].ref });
  assert.equal(view.olderDone, true);
  assert.equal(ids(view)[0], '900-0');
  t.sent.length = 0;
  view.checkScroll();
  assert.equal(t.sent.length, 0, 'the beginning was reached');
  assert.match(view.historyEl.textContent, /beginning/);
  view.jumpToLatest();
  assert.equal(ids(view).at(-1), '6999-0');
});

test('rooms, the open room, drafts and read positions are kept in localStorage', () => {
  const doc = newDoc();
  const storage = doc.defaultView.localStorage;
  const t = newChat({ doc, store: new Store(storage, 'alice') });
  joined(t, { id: '1', history: [msg('1-0'), msg('2-0')] });
  joined(t, { id: '2', title: 'Random' });
  t.chat.select('1');
  const view = t.chat.views.get('1');
  view.input.value = 'draft';
  view.input.dispatchEvent(new doc.defaultView.Event('input'));

  const doc2 = newDoc();
  Object.defineProperty(doc2.defaultView, 'localStorage', { value: storage });
  const t2 = newChat({ doc: doc2, store: new Store(storage, 'alice') });
  t2.chat.restore();
  assert.deepEqual([...t2.chat.views.keys()], ['1', '2']);
  assert.equal(t2.chat.currentId, '1');
  assert.equal(t2.chat.views.get('1').input.value, 'draft');
  assert.equal(t2.chat.views.get('1').readId, '2-0');
  t2.chat.rejoinAll();
  assert.deepEqual(t2.sent.map((c) => c.room), ['1', '2']);
  // Another user of the same browser has rooms of their own.
  assert.deepEqual(new Store(storage, 'bob').joined(), []);
  // Garbage in storage is ignored.
  storage.setItem('multichat:carol:rooms', '{"x": 1}');
  assert.deepEqual(new Store(storage, 'carol').joined(), []);
  storage.setItem('multichat:carol:rooms', '["1", "../x", 5]');
  assert.deepEqual(new Store(storage, 'carol').joined(), ['1']);
});

test('version 1: rooms joined, left and read in another tab follow through localStorage', () => {
  const doc = newDoc();
  const storage = doc.defaultView.localStorage;
  const t = newChat({ doc, store: new Store(storage, 'alice') });
  joined(t, { id: '1', history: [msg('1-0')] });
  t.chat.handleEvent(msg('2-0'));
  t.chat.handleEvent(msg('3-0'));
  t.chat.select('1');
  joined(t, { id: '2', title: 'Random' });
  t.chat.select('2');
  t.chat.handleEvent(msg('4-0', { room: '1' }));
  assert.equal(t.chat.views.get('1').unread, 1);
  const other = new Store(storage, 'alice');
  other.setJoined(['1', '3']);
  other.setReadMarker('1', '4-0');
  t.sent.length = 0;
  t.chat.syncFromStore();
  assert.deepEqual(t.sent.map(({ ref, ...c }) => c), [{ command: 'leave', room: '2' }, { command: 'join', room: '3' }]);
  assert.equal(t.chat.views.has('2'), false);
  assert.equal(t.chat.views.get('1').unread, 0);
  assert.deepEqual(t.state.title, [0, 0]);
});

test('version 2: hello lists the rooms, the server counts unread and marks read', () => {
  const t = newChat();
  t.chat.handleEvent({ hello: 2, username: 'alice', rooms: ['1', '3'] });
  assert.equal(t.chat.proto, 2);
  assert.deepEqual([...t.chat.views.keys()], ['1', '3']);
  assert.equal(t.chat.currentId, '1');
  joined(t, { id: '3', title: 'Three', history: [msg('1-0', { room: '3' }), msg('2-0', { room: '3', mentions: ['alice'] })], read: '0-1', unread: 7, mentions: 2 });
  joined(t, { id: '1', read: null, unread: 0, mentions: 0 });
  const v3 = t.chat.views.get('3');
  assert.equal(v3.unread, 7);
  assert.equal(v3.mentionCount, 2);
  // Live messages add to the server's count until it sends a new one.
  t.chat.handleEvent(msg('3-0', { room: '3', mentions: ['alice'] }));
  assert.equal(v3.unread, 8);
  assert.equal(v3.mentionCount, 3);
  assert.ok(v3.entries.at(-1).mention, 'the server\'s mention list counts');
  t.chat.handleEvent({ unread: '3', read: '3-0', count: 0, mentions: 0 });
  assert.equal(v3.unread, 0);
  assert.equal(v3.readId, '3-0');
  // Left on another device: gone here too.
  t.chat.handleEvent({ leave: '3' });
  assert.equal(t.chat.views.has('3'), false);
  // The hello answer of a later connection drops rooms left meanwhile.
  t.chat.handleEvent({ hello: 2, username: 'alice', rooms: [] });
  assert.equal(t.chat.views.size, 0);
});

test('version 2: opening a read room sends a read marker, at most once a second', async () => {
  const t = newChat();
  t.chat.handleEvent({ hello: 2, username: 'alice', rooms: ['1'] });
  joined(t, { id: '1', history: [msg('1-0'), msg('2-0')], read: '1-0', unread: 1, mentions: 0 });
  t.chat.select('1');
  t.chat.handleEvent(msg('3-0'));
  await new Promise((r) => setTimeout(r, 1200));
  const reads = t.sent.filter((c) => c.command === 'read');
  assert.deepEqual(reads.map(({ ref, ...c }) => c), [{ command: 'read', room: '1', id: '3-0' }]);
});

test('a refused join clears the pending mark; a refused re-join closes the room', () => {
  const t = newChat();
  t.chat.handleEvent({ rooms: [{ id: '1', title: 'Lobby' }, { id: '2', title: 'Staff', staff_only: true }] });
  t.chat.join('2');
  t.chat.handleEvent({ error: 'ROOM_ACCESS_DENIED', ref: t.sent.at(-1).ref });
  assert.equal(t.chat.pending.size, 0);
  assert.equal(t.doc.querySelector('#rooms button[data-room-id="2"]'), null);
  assert.equal(t.doc.querySelector('.toast-text').textContent, `Staff: ${errorText('ROOM_ACCESS_DENIED')}`);

  joined(t);
  t.chat.rejoinAll();
  t.chat.handleEvent({ error: 'ROOM_INVALID', ref: t.sent.at(-1).ref });
  assert.equal(t.chat.views.size, 0);
  assert.equal(t.doc.querySelector('.room-pane'), null);
});

test('a kick or a deleted room closes the room with a notice', () => {
  for (const [reason, words] of [['kicked', 'removed from'], ['deleted', 'was deleted']]) {
    const t = newChat();
    joined(t, { title: XSS });
    t.chat.handleEvent({ leave: '1', reason });
    assert.equal(t.doc.querySelector('.room-pane'), null);
    const toast = t.doc.querySelector('.toast-text').textContent;
    assert.ok(toast.includes(words) && toast.includes(XSS), toast);
    assert.equal(t.doc.querySelector('img'), null);
  }
});

test('USER_HAS_TO_LOGIN goes to the login page', () => {
  const t = newChat();
  t.chat.handleEvent({ error: 'USER_HAS_TO_LOGIN' });
  assert.equal(t.state.loggedOut, 1);
});

test('unknown or malformed events are ignored', () => {
  const t = newChat();
  const view = joined(t);
  for (const ev of [null, 42, 'x', [], {}, { something: 1 }, { rooms: 'no' }, { deleted: '9', room: '1' }, { typing: 'alice', room: '1' },
    { hello: 3 }, { unread: '9', count: 5 }, { history: 'x', room: '1' }, { ok: true, ref: 'nothing' }])
    t.chat.handleEvent(ev);
  assert.equal(view.messagesEl.children.length, 0);
  assert.equal(view.typingEl.textContent, '', 'own typing is not shown');
  assert.equal(t.chat.proto, 1);
});

test('reconnect backoff doubles from 0.5 s to 10 s with jitter', () => {
  assert.equal(backoffDelay(0, () => 0), 250);
  assert.equal(backoffDelay(0, () => 1), 500);
  assert.equal(backoffDelay(1, () => 1), 1000);
  assert.equal(backoffDelay(4, () => 1), 8000);
  assert.equal(backoffDelay(5, () => 1), 10000);
  assert.equal(backoffDelay(1000, () => 1), 10000);
  assert.equal(backoffDelay(1000, () => 0), 5000);
  for (let i = 0; i < 50; i++) {
    const d = backoffDelay(i);
    assert.ok(d >= 250 && d <= 10000, String(d));
  }
});

const SCRIPTS = ['chat.js', 'chatview.js', 'dom.js', 'login.js', 'markup.js', 'render.js', 'store.js'];

test('web files: no HTML injection sinks, no inline script or style', () => {
  for (const f of SCRIPTS) {
    // Comments may name the sinks they avoid.
    const src = fs.readFileSync(WEB + f, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function', '.style', 'setAttribute(\'on', 'alert(', 'DOMParser', 'createContextualFragment'])
      assert.ok(!src.includes(sink), `${f} uses ${sink}`);
  }
  for (const f of ['index.html', 'login.html']) {
    const doc = new JSDOM(fs.readFileSync(WEB + f, 'utf8')).window.document;
    for (const s of doc.querySelectorAll('script')) assert.ok(s.src && s.textContent.trim() === '', `${f}: inline script`);
    assert.equal(doc.querySelectorAll('style, [style]').length, 0, `${f}: inline style`);
    for (const e of doc.querySelectorAll('*'))
      for (const a of e.attributes) assert.ok(!a.name.startsWith('on'), `${f}: inline handler ${a.name}`);
  }
});

test('every web file is installed, and every module it imports exists', () => {
  const meson = fs.readFileSync(WEB + 'meson.build', 'utf8');
  for (const f of fs.readdirSync(WEB).filter((x) => x !== 'meson.build')) assert.ok(meson.includes(`'${f}'`), `${f} is not installed`);
  for (const f of SCRIPTS) {
    for (const m of fs.readFileSync(WEB + f, 'utf8').matchAll(/from '\.\/([^']+)'/g)) assert.ok(fs.existsSync(WEB + m[1]), `${f} imports ${m[1]}`);
  }
});

test('index.html has what chat.js and the browser test use', () => {
  const doc = new JSDOM(fs.readFileSync(WEB + 'index.html', 'utf8')).window.document;
  for (const id of ['joined-list', 'room-list', 'conversation', 'conversation-empty', 'toasts', 'live', 'whoami', 'connection-status',
    'logout-form', 'logout-csrf', 'offline-banner', 'switcher', 'switcher-input'])
    assert.ok(doc.getElementById(id), `#${id}`);
  assert.equal(doc.querySelectorAll('[aria-live]').length, 1, 'one live region');
  const form = doc.getElementById('logout-form');
  assert.equal(form.getAttribute('method'), 'post');
  assert.equal(form.getAttribute('action'), '/logout');
  assert.equal(doc.getElementById('logout-csrf').getAttribute('name'), 'csrf');
  const script = doc.querySelector('script');
  assert.equal(script.getAttribute('type'), 'module');
  assert.equal(script.getAttribute('src'), '/static/chat.js');
  const srcs = fs.readFileSync(WEB + 'chat.js', 'utf8');
  for (const id of srcs.matchAll(/\$\('([^']+)'\)/g)) assert.ok(doc.getElementById(id[1]), `chat.js uses missing #${id[1]}`);
});

test('login.html is a template with each placeholder once, in a POST form to /login; the error names its fields', () => {
  const src = fs.readFileSync(WEB + 'login.html', 'utf8');
  for (const p of ['@CSRF@', '@NEXT@', '@ERROR@']) assert.equal(src.split(p).length - 1, 1, p);
  const doc = new JSDOM(src).window.document;
  const form = doc.querySelector('form');
  assert.equal(form.getAttribute('method'), 'post');
  assert.equal(form.getAttribute('action'), '/login');
  assert.equal(form.querySelector('input[name="csrf"]').getAttribute('value'), '@CSRF@');
  assert.equal(form.querySelector('input[name="next"]').getAttribute('value'), '@NEXT@');
  assert.equal(doc.querySelector('.login-error').textContent, '@ERROR@');
  for (const name of ['username', 'password']) {
    const input = form.querySelector(`input[name="${name}"]`);
    assert.ok(input && doc.querySelector(`label[for="${input.id}"]`), `${name} has a label`);
    assert.equal(input.getAttribute('aria-describedby'), doc.querySelector('.login-error').id);
  }
  assert.equal(form.querySelector('input[name="password"]').type, 'password');
  assert.equal(doc.querySelector('script').getAttribute('src'), '/static/login.js');
});
