/**
 * No remote content without a click, in everything the labextension renders (the panel and the
 * saved-trace renderer: the model's Markdown and the HTML outputs of sandbox code).
 *
 * An image URL the browser loads on its own is a channel out of a network-less sandbox, and a way
 * for a prompt-injected model to leak notebook context. So HTML is rewritten after rendermime's
 * sanitizer and before it is inserted anywhere (`neutralizeRemote`): parsed in an inert
 * `<template>` (nothing loads there), every attribute, element and CSS reference that would load
 * from outside is removed, and remote images become a placeholder that shows the URL with a
 * "Load image" button (`armRemoteContent` wires the buttons of a container). `data:` images (and
 * the outputs' own image bundles, drawn as `data:` URLs) stay inline. The same rules, markup and
 * class names as `k2lab/trace/remote.py` (the live view and the saved `text/html`).
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';

// dropped with their content: script, and elements whose text is raw when serialised (so no text
// can turn into markup when the result is parsed again)
const DROP_WITH_CONTENT = new Set([
  'script',
  'noscript',
  'xmp',
  'noembed',
  'noframes',
  'plaintext',
  'template'
]);
// dropped, children kept: frames, plugins and document-level loaders
const DROP_TAG = new Set([
  'iframe',
  'frame',
  'frameset',
  'object',
  'embed',
  'applet',
  'portal',
  'fencedframe',
  'link',
  'meta',
  'base',
  'param'
]);
const FETCHED = new Set(['src', 'poster', 'background', 'lowsrc', 'dynsrc']);
const SRCSET = new Set(['srcset', 'imagesrcset']);
const ALWAYS_DROP = new Set([
  'data',
  'codebase',
  'archive',
  'classid',
  'manifest',
  'ping',
  'icon',
  'profile'
]);
const NAVIGATION = new Set(['a', 'area']); // their href loads only on a click
const URL_FN = /url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"]*?))\s*\)/gi;
const CSS_LOADERS =
  /(image-set|image|src|cross-fade|element|paint)\s*\(|@import|url\s*\(/i;
const MAX_LISTED = 10;

/** A `data:` URL (after what URL parsing ignores): loading it fetches nothing. */
export function isInline(url: string): boolean {
  const u = url
    .replace(/[\t\n\r]/g, '')
    .replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, ''); // eslint-disable-line no-control-regex
  return u.slice(0, 5).toLowerCase() === 'data:';
}

/**
 * CSS with every `url()` that is not `data:` replaced by `none` (the URLs go to `found`); `null`
 * when it has what could load in ways not worth parsing (escapes, `@import`, `image-set()`...)
 * or markup.
 */
export function safeCss(css: string, found: string[]): string | null {
  css = css.replace(/\/\*[\s\S]*?(\*\/|$)/g, ' ').replace(/\0/g, '');
  if (css.includes('\\') || css.includes('<')) {
    return null;
  }
  css = css.replace(URL_FN, (whole, a, b, c) => {
    const value = String(a ?? b ?? c ?? '');
    if (isInline(value)) {
      return whole;
    }
    found.push(value.trim());
    return 'none';
  });
  // what is left of a loader after the data: urls were kept
  const probe = css.replace(URL_FN, '');
  return CSS_LOADERS.test(probe) ? null : css;
}

function srcsetInline(value: string): boolean {
  return isInline(value) && /^\s*data:\S*(\s+\d+(\.\d+)?[wx])?\s*$/.test(value);
}

/** Where a remote URL goes on a click (`null`: not http(s), never loaded). */
export function remoteUrl(raw: string | undefined): string | null {
  try {
    const u = new URL(raw || '', document.baseURI);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function link(doc: Document, url: string): HTMLAnchorElement {
  const a = doc.createElement('a');
  a.className = 'k2lab-remote-url';
  a.href = url; // an <a> is a navigation: loaded only on a click
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  a.textContent = url.length > 120 ? `${url.slice(0, 117)}...` : url;
  return a;
}

/** The placeholder of a remote image: the URL as a link and a Load image button. */
export function imagePlaceholder(
  doc: Document,
  url: string,
  alt: string
): HTMLElement {
  const ph = doc.createElement('span');
  ph.className = 'k2lab-remote';
  ph.dataset.k2labUrl = url;
  ph.dataset.k2labAlt = alt;
  const label = doc.createElement('span');
  label.className = 'k2lab-remote-label';
  label.textContent = 'Remote image not loaded: ';
  ph.append(label, link(doc, url));
  if (remoteUrl(url)) {
    const b = doc.createElement('button');
    b.type = 'button';
    b.className = 'k2lab-btn k2lab-remote-load';
    b.textContent = 'Load image';
    ph.append(' ', b);
  }
  return ph;
}

/** Rewrites `root` in place; returns the remote references removed (images excluded). */
function neutralizeTree(root: DocumentFragment): string[] {
  const found: string[] = [];
  const doc = root.ownerDocument;
  for (const el of Array.from(root.querySelectorAll('*'))) {
    if (!root.contains(el)) {
      continue; // inside something already removed
    }
    const tag = el.localName.toLowerCase();
    if (DROP_WITH_CONTENT.has(tag) || DROP_TAG.has(tag)) {
      for (const name of ['src', 'href', 'data']) {
        const v = el.getAttribute(name);
        if (v && !isInline(v)) {
          found.push(v.trim());
        }
      }
      if (DROP_WITH_CONTENT.has(tag)) {
        el.remove();
      } else {
        el.replaceWith(...Array.from(el.childNodes));
      }
      continue;
    }
    let remoteSrc = '';
    let remoteSrcset = '';
    for (const attr of Array.from(el.attributes)) {
      const name = attr.name.toLowerCase();
      const value = attr.value;
      const v = value.trim();
      let drop = false;
      if (name.startsWith('on') || name.startsWith('data-k2lab')) {
        drop = true; // no forged placeholders
      } else if (name === 'class') {
        const kept = Array.from(el.classList).filter(
          c => !c.startsWith('k2lab-remote')
        );
        if (kept.length !== el.classList.length) {
          el.className = kept.join(' ');
        }
      } else if (ALWAYS_DROP.has(name)) {
        drop = true;
      } else if (FETCHED.has(name)) {
        if (v && !isInline(value)) {
          drop = true;
          if (tag === 'img' && name === 'src') {
            remoteSrc = v;
          } else {
            found.push(v);
          }
        }
      } else if (SRCSET.has(name)) {
        if (v && !srcsetInline(value)) {
          drop = true;
          if (tag === 'img') {
            remoteSrcset = v.split(/\s+/)[0];
          } else {
            found.push(v.split(/\s+/)[0]);
          }
        }
      } else if (name === 'href' || name === 'xlink:href') {
        const ok =
          NAVIGATION.has(tag) ||
          !v ||
          v.startsWith('#') ||
          ((tag === 'image' || tag === 'feimage') && isInline(v));
        if (!ok) {
          drop = true;
          found.push(v);
        }
      } else if (name === 'style') {
        const css = safeCss(value, found);
        if (css === null) {
          drop = true;
        } else if (css !== value) {
          attr.value = css;
        }
      }
      if (drop) {
        el.removeAttribute(attr.name);
      }
    }
    if (tag === 'style') {
      const css = safeCss(el.textContent || '', found);
      if (css === null) {
        el.remove();
        continue;
      }
      el.textContent = css;
    }
    if (remoteSrcset) {
      if (remoteSrc || el.getAttribute('src')?.trim()) {
        found.push(remoteSrcset); // the img still shows its own (data:) source
      } else {
        remoteSrc = remoteSrcset; // nothing left to show: a placeholder
      }
    }
    if (remoteSrc) {
      el.replaceWith(
        imagePlaceholder(doc, remoteSrc, el.getAttribute('alt') || '')
      );
    }
  }
  return found;
}

/**
 * `html` (already sanitized) without anything that loads from outside: remote images become
 * placeholders, other remote references are removed and listed, as links, in a note at the end.
 */
export function neutralizeRemote(html: string): string {
  const t = document.createElement('template'); // inert: its content loads nothing
  t.innerHTML = html;
  const found = Array.from(new Set(neutralizeTree(t.content)));
  if (found.length) {
    const doc = t.content.ownerDocument;
    const note = doc.createElement('div');
    note.className = 'k2lab-remote-note';
    note.append('Not loaded from outside: ');
    found.slice(0, MAX_LISTED).forEach((u, i) => {
      note.append(i ? ', ' : '', link(doc, u));
    });
    if (found.length > MAX_LISTED) {
      note.append(` and ${found.length - MAX_LISTED} more`);
    }
    t.content.append(note);
  }
  return t.innerHTML;
}

/** rendermime's sanitizer followed by `neutralizeRemote`, for `renderMarkdown`. */
export function guardSanitizer(
  inner: IRenderMime.ISanitizer
): IRenderMime.ISanitizer {
  return {
    sanitize: (dirty, options) =>
      neutralizeRemote(inner.sanitize(dirty, options)),
    getAutolink: inner.getAutolink ? () => !!inner.getAutolink?.() : undefined,
    get allowNamedProperties() {
      return inner.allowNamedProperties;
    },
    get allowCommandLinker() {
      return inner.allowCommandLinker;
    }
  };
}

/** The Load image buttons of placeholders anywhere inside `root` (now and later). */
export function armRemoteContent(root: HTMLElement): void {
  root.addEventListener('click', ev => {
    const target = ev.target instanceof Element ? ev.target : null;
    const b = target?.closest('button.k2lab-remote-load');
    const ph = b?.closest<HTMLElement>('.k2lab-remote[data-k2lab-url]');
    if (!b || !ph || !root.contains(ph)) {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
    const url = remoteUrl(ph.dataset.k2labUrl);
    if (!url) {
      return;
    }
    const img = document.createElement('img');
    img.className = 'k2lab-image k2lab-remote-image';
    img.alt = ph.dataset.k2labAlt || '';
    img.referrerPolicy = 'no-referrer';
    img.src = url; // the person asked for it
    ph.replaceWith(img);
  });
}
