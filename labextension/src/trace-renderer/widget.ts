/**
 * The `application/vnd.k2lab.trace+json` renderer: a saved run, read-only, in notebooks and
 * output areas; the bundle shows what ran and what came back. Inside a notebook whose session has
 * a kernel, python calls that ran get a Replay button that re-runs the call in a k2lab sandbox
 * started by that kernel (`kernelReplay.ts`); the button follows the kernel (gone when there is
 * none). The notebook is looked up lazily, once the output is attached to the page.
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { renderMarkdown } from '@jupyterlab/rendermime';
import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { ITraceBundle } from '../types';
import { h } from '../dom';
import { panelContaining } from '../notebookLookup';
import { replayInKernel } from './kernelReplay';
import { armRemoteContent, guardSanitizer } from '../safeContent';
import { TraceView } from './traceView';

export const TRACE_MIME_TYPE = 'application/vnd.k2lab.trace+json';
const SUPPORTED_VERSIONS = [1];

export class RenderedTrace extends Widget implements IRenderMime.IRenderer {
  private view: TraceView | null = null;
  private bundle: ITraceBundle | null = null;
  private panel: NotebookPanel | null = null;
  private hint: HTMLElement | null = null;

  constructor(private options: IRenderMime.IRendererOptions) {
    super();
    this.addClass('k2lab-trace-output');
    armRemoteContent(this.node);
  }

  dispose(): void {
    this.watchPanel(null);
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.findPanel();
  }

  /** The notebook holding this output (the tracker may learn of a new notebook a bit later). */
  private findPanel(retry = true): void {
    const panel = panelContaining(this.node);
    if (panel) {
      this.watchPanel(panel);
    } else if (retry) {
      setTimeout(() => this.isAttached && this.findPanel(false), 500);
    }
  }

  private watchPanel(panel: NotebookPanel | null): void {
    if (this.panel === panel) {
      this.offerReplay();
      return;
    }
    const ctx = this.panel?.sessionContext;
    ctx?.kernelChanged.disconnect(this.offerReplay, this);
    ctx?.sessionChanged.disconnect(this.offerReplay, this);
    this.panel = panel;
    panel?.sessionContext.kernelChanged.connect(this.offerReplay, this);
    panel?.sessionContext.sessionChanged.connect(this.offerReplay, this);
    this.offerReplay();
  }

  /** Replay buttons while the notebook has a kernel; a one-line hint while it has none. */
  private offerReplay(): void {
    const view = this.view;
    if (!view || this.isDisposed) {
      return;
    }
    const ctx = this.panel?.sessionContext;
    const kernel = ctx?.session?.kernel ?? null;
    const runId = this.bundle?.run_id || '';
    const events = this.bundle?.events ?? [];
    view.setReplay(
      kernel && ctx
        ? callId => {
            const k = ctx.session?.kernel; // the kernel of the moment of the click
            if (!k) {
              return Promise.reject(new Error('the notebook has no kernel'));
            }
            return replayInKernel(k, runId, callId, events);
          }
        : null
    );
    const wantHint = !!this.panel && !kernel && view.replayableCount() > 0;
    if (wantHint && !this.hint) {
      this.hint = h(
        'div',
        { class: 'k2lab-note k2lab-replay-hint' },
        "Replay: start this notebook's kernel to re-run the python calls in a sandbox."
      );
      this.node.prepend(this.hint);
    } else if (!wantHint && this.hint) {
      this.hint.remove();
      this.hint = null;
    }
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const bundle = model.data[this.options.mimeType] as unknown as ITraceBundle;
    this.node.replaceChildren();
    this.view = null;
    this.hint = null;
    this.bundle = null;
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
          sanitizer: guardSanitizer(sanitizer), // remote images wait for a click
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
    this.view = view;
    this.bundle = bundle;
    if (this.isAttached) {
      this.findPanel();
    }
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [TRACE_MIME_TYPE],
  defaultRank: 30, // ahead of the text/html and text/markdown fallbacks in the same bundle
  createRenderer: options => new RenderedTrace(options)
};
