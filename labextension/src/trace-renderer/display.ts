/**
 * Renders a tool result's rich outputs (Jupyter display bundles) for people: images from
 * base64 `image/png` / `image/jpeg`, sanitized `text/html`, else `text/plain`.
 */
import { IDisplayBundle } from '../types';
import { h } from '../dom';
import { neutralizeRemote } from '../safeContent';

/** How the host sanitizes HTML (rendermime's sanitizer in JupyterLab). */
export type Sanitize = (html: string) => string;

function text(value: unknown): string {
  return Array.isArray(value) ? value.join('') : String(value ?? '');
}

/** The tag under an image that also went to the model (`tool.result.sent_to_model`). */
function sentTag(): HTMLElement {
  return h(
    'span',
    {
      class: 'k2lab-sent-tag',
      title: 'This image was also sent to the model, which can see it'
    },
    'sent to the model'
  );
}

export function renderDisplay(
  bundle: IDisplayBundle,
  sanitize: Sanitize,
  sent = false
): HTMLElement | null {
  const data = bundle.data || {};
  for (const mime of ['image/png', 'image/jpeg', 'image/gif', 'image/webp']) {
    if (typeof data[mime] === 'string') {
      const img = h('img', {
        class: 'k2lab-image',
        alt: text(data['text/plain']) || mime,
        src: `data:${mime};base64,${data[mime].replace(/\s/g, '')}`
      });
      return sent
        ? h('div', { class: 'k2lab-display' }, img, sentTag())
        : h('div', { class: 'k2lab-display' }, img);
    }
  }
  if (data['image/svg+xml'] !== undefined) {
    // as an <img>, an SVG cannot run scripts
    const svg = text(data['image/svg+xml']);
    return h(
      'div',
      { class: 'k2lab-display' },
      h('img', {
        class: 'k2lab-image',
        alt: text(data['text/plain']) || 'image/svg+xml',
        src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`
      })
    );
  }
  if (data['text/html'] !== undefined) {
    const div = h('div', { class: 'k2lab-display k2lab-display-html' });
    // sanitized, then nothing that loads from outside (remote images wait for a click)
    div.innerHTML = neutralizeRemote(sanitize(text(data['text/html'])));
    return div;
  }
  if (data['text/plain'] !== undefined) {
    return h(
      'pre',
      { class: 'k2lab-display k2lab-display-text' },
      text(data['text/plain'])
    );
  }
  return null;
}
