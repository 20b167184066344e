// SPDX-License-Identifier: LGPL-2.1-or-later
// web-modules.mjs: module loader hook: the page's web/*.js files are ES modules.
//
// web/ has no package.json (it is served as is), and node before 20.19
// (Debian 12 has 18) does not detect module syntax by itself:
// node --experimental-loader ./web-modules.mjs --test render.test.mjs

const WEB = new URL('../../web/', import.meta.url).href;

export async function load(url, context, nextLoad) {
  if (url.startsWith(WEB) && url.endsWith('.js')) return nextLoad(url, { ...context, format: 'module' });
  return nextLoad(url, context);
}
