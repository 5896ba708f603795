/**
 * The panel's header: the session picker (history) with New / Delete, the status line (model,
 * sandbox isolation, step / budget, tokens, connection) and, without an API key, how to set one.
 */
import { button, compact, h } from '../dom';
import { ISessionMeta } from '../types';
import { IRunState } from '../trace-renderer/traceView';

export interface IHeaderHandlers {
  select(id: string | null): void;
  create(): void;
  remove(): void;
}

export interface IStatus {
  modelLabel: string;
  demo: boolean;
  isolation: string;
  maxSteps: number;
  run: IRunState | null;
  connection: string;
}

function when(t: string | number | null | undefined): string {
  if (t === null || t === undefined || t === '') {
    return '';
  }
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  return isNaN(d.getTime())
    ? ''
    : d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' });
}

export class PanelHeader {
  readonly node: HTMLElement;
  private select: HTMLSelectElement;
  private status: HTMLElement;
  private keyHelp: HTMLElement;
  private keyHelpText: HTMLElement;
  private deleteButton: HTMLButtonElement;

  constructor(handlers: IHeaderHandlers) {
    this.select = h('select', {
      class: 'k2lab-session-select',
      'aria-label': 'session'
    });
    this.select.addEventListener('change', () =>
      handlers.select(this.select.value || null)
    );
    this.deleteButton = button(
      'Delete',
      'k2lab-delete-session',
      () => handlers.remove(),
      'Delete this session and its history'
    );
    this.status = h('div', { class: 'k2lab-status' });
    this.keyHelpText = h('div', { class: 'k2lab-key-help-text' });
    this.keyHelp = h(
      'details',
      { class: 'k2lab-key-help', hidden: true },
      h(
        'summary',
        {},
        'Using the offline demo model · how to use Kimi K2 Thinking'
      ),
      this.keyHelpText
    );
    this.node = h(
      'div',
      { class: 'k2lab-header' },
      h(
        'div',
        { class: 'k2lab-header-row' },
        this.select,
        button(
          'New',
          'k2lab-new-session',
          () => handlers.create(),
          'Start a new session'
        ),
        this.deleteButton
      ),
      this.status,
      this.keyHelp
    );
  }

  setSessions(sessions: ISessionMeta[], current: string | null): void {
    this.select.replaceChildren(h('option', { value: '' }, '— new session —'));
    for (const s of sessions) {
      const label = `${s.running ? '● ' : ''}${s.title || 'untitled'}${when(s.updated || s.created) ? ' · ' + when(s.updated || s.created) : ''}`;
      this.select.append(h('option', { value: s.id }, label));
    }
    this.select.value = current ?? '';
    this.deleteButton.disabled = !current;
  }

  setStatus(s: IStatus): void {
    const run = s.run;
    const b = run?.budgets;
    const parts: (HTMLElement | null)[] = [
      h(
        'span',
        {
          class: `k2lab-status-model${(run ? run.demo : s.demo) ? ' k2lab-demo' : ''}`
        },
        run?.modelLabel || s.modelLabel
      ),
      h(
        'span',
        { class: 'k2lab-status-isolation' },
        `sandbox: ${run?.isolation || s.isolation}`
      ),
      h(
        'span',
        { class: 'k2lab-status-step' },
        `step ${run?.step ?? 0}/${run?.maxSteps || s.maxSteps || '?'}`
      ),
      h(
        'span',
        { class: 'k2lab-status-tokens' },
        `tokens ${compact(run?.promptTokens ?? 0)} in / ${compact(run?.completionTokens ?? 0)}` +
          (b?.max_total_tokens ? `/${compact(b.max_total_tokens)}` : '') +
          ' out' +
          (b?.max_tokens ? ` (max ${compact(b.max_tokens)}/request)` : '')
      ),
      run?.context
        ? h('span', { class: 'k2lab-status-context' }, run.context)
        : null,
      run?.cost ? h('span', { class: 'k2lab-status-cost' }, run.cost) : null,
      b?.wall_time
        ? h(
            'span',
            { class: 'k2lab-status-wall' },
            `wall time ${b.wall_time} s`
          )
        : null,
      run
        ? h(
            'span',
            { class: `k2lab-status-run${run.running ? ' k2lab-running' : ''}` },
            run.running ? 'running' : run.stopText || run.stopReason || 'idle'
          )
        : null,
      s.connection
        ? h('span', { class: 'k2lab-status-connection' }, s.connection)
        : null
    ];
    this.status.replaceChildren(
      ...parts.filter((p): p is HTMLElement => p !== null)
    );
  }

  /** How to configure a key (never a field to type it in: the key stays on the server). */
  setKeyHelp(summary: string, text: string | null): void {
    this.keyHelp.hidden = !text;
    (this.keyHelp.firstChild as HTMLElement).textContent = summary;
    this.keyHelpText.textContent = text ?? '';
  }
}
