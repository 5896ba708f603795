/**
 * The `application/vnd.k2lab.trace+json` renderer: a saved run, read-only, in notebooks and
 * output areas. Replay is not offered here (it needs the side panel's session, or a kernel with
 * k2lab's widget); the bundle shows what ran and what came back.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { renderMarkdown } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { ITraceBundle } from '../types';
import { h } from '../dom';
import { TraceView } from './traceView';

export const TRACE_MIME_TYPE = 'application/vnd.k2lab.trace+json';
const SUPPORTED_VERSIONS = [1];

export class RenderedTrace extends Widget implements IRenderMime.IRenderer {
  constructor(private options: IRenderMime.IRendererOptions) {
    super();
    this.addClass('k2lab-trace-output');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const bundle = model.data[this.options.mimeType] as unknown as ITraceBundle;
    this.node.replaceChildren();
    if (!bundle || !Array.isArray(bundle.events)) {
      this.node.append(
        h(
          'div',
          { class: 'k2lab-note k2lab-error' },
          'k2lab trace: no events in this output'
        )
      );
      return;
    }
    if (!SUPPORTED_VERSIONS.includes(bundle.version)) {
      this.node.append(
        h(
          'div',
          { class: 'k2lab-notice' },
          `k2lab trace version ${bundle.version} is newer than this renderer knows (1); showing what it can.`
        )
      );
    }
    const {
      sanitizer,
      resolver,
      linkHandler,
      latexTypesetter,
      markdownParser
    } = this.options;
    const view = new TraceView({
      sanitize: html => sanitizer.sanitize(html),
      renderMarkdown: (host, source) =>
        renderMarkdown({
          host,
          source,
          trusted: false, // model output: sanitized like an untrusted notebook's Markdown
          sanitizer,
          resolver,
          linkHandler,
          latexTypesetter,
          markdownParser: markdownParser ?? null,
          shouldTypeset: this.isAttached,
          translator: this.options.translator
        })
    });
    for (const ev of bundle.events) {
      view.add(ev);
    }
    this.node.append(view.node);
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [TRACE_MIME_TYPE],
  defaultRank: 30, // ahead of the text/html and text/markdown fallbacks in the same bundle
  createRenderer: options => new RenderedTrace(options)
};
