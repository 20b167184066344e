#!/usr/bin/env node
// SPDX-License-Identifier: LGPL-2.1-or-later
// chat.mjs: end-to-end browser test: two users log in through /login, join a room, chat, and an XSS attempt stays text.
//
// node tests/browser/chat.mjs --url http://127.0.0.1:PORT --user alice:alice-pw --user bob:bob-pw
//      [--room-title Lobby] [--screenshot out.png] [--chromium /usr/lib/chromium/chromium]
// Exits 0 on success, 1 on failure (with the failed step), 77 when no chromium is installed.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const XSS = '<img src=x onerror=alert(1)>';
const HELLO = 'hello bob';
const RUN_LIMIT_MS = 55000;
const STEP_MS = 10000;
const EXIT_SKIP = 77;

function usage(msg) {
  console.error(`chat.mjs: ${msg}`);
  console.error('usage: node chat.mjs --url URL --user NAME:PASSWORD --user NAME:PASSWORD [--room-title TITLE] [--screenshot FILE] [--chromium PATH]');
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        user: { type: 'string', multiple: true, default: [] },
        'room-title': { type: 'string', default: 'Lobby' },
        screenshot: { type: 'string' },
        chromium: { type: 'string' },
      },
    }));
  } catch (e) {
    usage(e.message);
  }
  if (!values.url) usage('--url is required');
  if (values.user.length !== 2) usage('exactly two --user NAME:PASSWORD are required');
  const users = values.user.map((u) => {
    const i = u.indexOf(':');
    if (i <= 0) usage(`--user ${u}: expected NAME:PASSWORD`);
    return { name: u.slice(0, i), password: u.slice(i + 1) };
  });
  return { url: values.url.replace(/\/+$/, ''), users, room: values['room-title'], screenshot: values.screenshot, chromium: values.chromium };
}

function findChromium(explicit) {
  const candidates = [explicit, process.env.CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'].filter(Boolean);
  return candidates.find((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

class StepError extends Error {}

let step = 'start';
async function run(label, fn) {
  step = label;
  try {
    return await fn();
  } catch (e) {
    if (e instanceof StepError) throw e;
    throw new StepError(`${label}: ${e.message.split('\n')[0]}`);
  }
}

function check(cond, msg) {
  if (!cond) throw new StepError(`${step}: ${msg}`);
}

// One logged-in user: browser context, page, and what the page complained about.
async function openUser(browser, base, user, all) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  ctx.setDefaultTimeout(STEP_MS);
  const page = await ctx.newPage();
  const u = { ...user, ctx, page, dialogs: [], errors: [] };
  all.push(u);
  page.on('dialog', (d) => {
    u.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => u.errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') u.errors.push(`console: ${m.text()}${m.location()?.url ? ` (${m.location().url})` : ''}`);
  });

  await run(`${user.name}: open ${base}/`, async () => {
    await page.goto(`${base}/`, { waitUntil: 'domcontentloaded' });
    check(new URL(page.url()).pathname === '/login', `expected a redirect to /login when logged out, got ${page.url()}`);
  });
  await run(`${user.name}: log in through the form`, async () => {
    await page.fill('input[name="username"]', user.name);
    await page.fill('input[name="password"]', user.password);
    await Promise.all([
      page.waitForURL((url) => url.pathname === '/', { waitUntil: 'domcontentloaded' }),
      page.click('form[action="/login"] button[type="submit"]'),
    ]).catch(async (e) => {
      const err = await page.locator('.login-error').textContent().catch(() => null);
      throw new Error(err ? `login refused: ${err.trim()}` : e.message);
    });
  });
  await run(`${user.name}: page shows the session and connects`, async () => {
    await page.waitForFunction((name) => document.getElementById('whoami')?.textContent === name, user.name);
    await page.waitForSelector('body[data-connection="open"]');
  });
  return u;
}

async function joinRoom(u, title) {
  return run(`${u.name}: join "${title}"`, async () => {
    const button = u.page.locator('#room-list button.room', {
      has: u.page.locator('.room-name', { hasText: new RegExp(`^${escapeRe(title)}$`) }),
    });
    await button.first().waitFor().catch(async () => {
      const titles = await u.page.locator('#room-list .room-name').allTextContents();
      throw new Error(`no room titled "${title}" in the room list (it has: ${titles.map((t) => `"${t}"`).join(', ') || 'nothing'})`);
    });
    check((await button.count()) === 1, `expected one room titled "${title}", found ${await button.count()}`);
    const id = await button.getAttribute('data-room-id');
    await button.click();
    const pane = u.page.locator(`#panes .room-pane[data-room-id="${id}"]`);
    await pane.waitFor();
    check((await pane.locator('.room-title').textContent()) === title, 'pane shows a different title');
    check((await button.getAttribute('aria-pressed')) === 'true', 'room list does not mark the room as joined');
    u.pane = pane;
    return id;
  });
}

// Mark what is already listed (history from earlier runs) so only new messages count.
async function markSeen(u) {
  await u.pane.locator('.messages').evaluate((ol) => {
    for (const li of ol.children) li.dataset.testSeen = '1';
  });
}

function freshMessage(u, text) {
  return u.pane.locator('.messages > li.message:not([data-test-seen])', {
    has: u.page.locator('.msg-text', { hasText: new RegExp(`^${escapeRe(text)}$`) }),
  });
}

async function expectMessage(u, text, from, own) {
  return run(`${u.name}: sees "${text}" from ${from}`, async () => {
    const li = freshMessage(u, text);
    await li.first().waitFor();
    check((await li.count()) === 1, `message shown ${await li.count()} times`);
    check((await li.locator('.msg-text').textContent()) === text, 'message text differs');
    check((await li.locator('.msg-user').textContent()) === from, `message attributed to "${await li.locator('.msg-user').textContent()}"`);
    const isOwn = await li.evaluate((el) => el.classList.contains('own'));
    check(isOwn === own, own ? 'own message is not marked as own' : "someone else's message is marked as own");
    return li;
  });
}

async function main() {
  const opt = parseCli();
  const exe = findChromium(opt.chromium);
  if (!exe) {
    console.log('chat.mjs: SKIP: no chromium found (apt-get install chromium)');
    process.exit(EXIT_SKIP);
  }
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'multichat-browser-'));
  let browser = null;
  const users = [];
  const watchdog = setTimeout(() => {
    console.log(`chat.mjs: FAIL: ${step}: whole run took longer than ${RUN_LIMIT_MS / 1000} s`);
    process.exit(1);
  }, RUN_LIMIT_MS);

  try {
    browser = await run('launch chromium', () => chromium.launch({
      executablePath: exe,
      headless: true,
      timeout: STEP_MS,
      // playwright gives the browser a fresh temporary --user-data-dir of its own.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
        `--crash-dumps-dir=${tmp}`],
      env: { ...process.env, HOME: tmp, XDG_CONFIG_HOME: tmp, XDG_CACHE_HOME: tmp },
    }));
    const alice = await openUser(browser, opt.url, opt.users[0], users);
    const bob = await openUser(browser, opt.url, opt.users[1], users);
    await joinRoom(alice, opt.room);
    await joinRoom(bob, opt.room);
    await markSeen(alice);
    await markSeen(bob);

    await run(`${alice.name}: send "${HELLO}" with Enter`, async () => {
      const input = alice.pane.locator('.send-input');
      await input.fill(HELLO);
      await input.press('Enter');
      await alice.page.waitForFunction((el) => el.value === '', await input.elementHandle());
    });
    await expectMessage(alice, HELLO, alice.name, true);
    await expectMessage(bob, HELLO, alice.name, false);

    await run(`${bob.name}: send an XSS attempt with the Send button`, async () => {
      await bob.pane.locator('.send-input').fill(XSS);
      await bob.pane.locator('.send-form button[type="submit"]').click();
    });
    await expectMessage(bob, XSS, bob.name, true);
    await expectMessage(alice, XSS, bob.name, false);
    await run(`${alice.name}: the XSS attempt stayed text`, async () => {
      // Give a would-be onerror handler time to fire.
      await alice.page.waitForTimeout(300);
      for (const u of users) {
        const imgs = await u.page.locator('#panes img, #room-list img, #toasts img').count();
        check(imgs === 0, `${u.name}'s page has ${imgs} <img> element(s) in the chat`);
        check(u.dialogs.length === 0, `${u.name}'s page opened a dialog: ${u.dialogs.join('; ')}`);
      }
    });
    await run('no script errors or CSP violations', async () => {
      for (const u of users) {
        const bad = u.errors.filter((e) => !/favicon/.test(e));
        check(bad.length === 0, `${u.name}: ${bad.join(' | ')}`);
      }
    });
    if (opt.screenshot) {
      await run(`screenshot to ${opt.screenshot}`, () => alice.page.screenshot({ path: opt.screenshot }));
    }
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`chat.mjs: PASS: ${alice.name} and ${bob.name} logged in, joined "${opt.room}", exchanged 2 messages, own marks right, XSS shown as text (${secs} s)`);
    return 0;
  } catch (e) {
    console.log(`chat.mjs: FAIL: ${e instanceof StepError ? e.message : `${step}: ${e.stack || e}`}`);
    for (const u of users) for (const err of u.errors) console.log(`  ${u.name}: ${err}`);
    return 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
    clearTimeout(watchdog);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
