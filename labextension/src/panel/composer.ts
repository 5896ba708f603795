/**
 * The bottom of the panel: the notebook-context picker, the prompt box, a status notice and the
 * buttons Approve all / Stop / Send. It owns no state about runs: the panel tells it what to
 * enable.
 */
import { INotebookTracker } from '@jupyterlab/notebook';

import { button, h } from '../dom';
import { ContextPicker } from './context';

export interface IComposerHandlers {
  send(): void;
  stop(): void;
  approveAll(): void;
}

export class Composer {
  readonly node: HTMLElement;
  readonly context: ContextPicker;
  readonly prompt: HTMLTextAreaElement;
  private sendButton: HTMLButtonElement;
  private stopButton: HTMLButtonElement;
  private approveAllButton: HTMLButtonElement;
  private notice: HTMLElement;

  constructor(
    tracker: INotebookTracker,
    maxContextChars: () => number,
    handlers: IComposerHandlers
  ) {
    this.prompt = h('textarea', {
      class: 'k2lab-prompt-input',
      rows: '3',
      placeholder: 'Ask the model… (Ctrl+Enter to send)',
      'aria-label': 'prompt'
    });
    this.prompt.addEventListener('keydown', ev => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        handlers.send();
      }
    });
    this.context = new ContextPicker(tracker, maxContextChars);
    // the selection may have changed since the chip was drawn
    this.prompt.addEventListener('focus', () => this.context.refresh());
    this.sendButton = button(
      'Send',
      'k2lab-send',
      handlers.send,
      'Send (Ctrl+Enter)'
    );
    this.stopButton = button(
      'Stop',
      'k2lab-stop',
      handlers.stop,
      'Stop the run (the trace is kept)'
    );
    this.approveAllButton = button(
      'Approve all',
      'k2lab-approve-all',
      handlers.approveAll,
      'Approve the waiting call(s) and every further call of this run'
    );
    this.notice = h('div', { class: 'k2lab-panel-notice', role: 'status' });
    this.node = h(
      'div',
      { class: 'k2lab-composer' },
      this.context.node,
      this.prompt,
      h(
        'div',
        { class: 'k2lab-composer-row' },
        this.notice,
        this.approveAllButton,
        this.stopButton,
        this.sendButton
      )
    );
  }

  /** Enable what makes sense: Send when idle, Stop while running, Approve all when calls wait. */
  update(running: boolean, pending: number, sending = false): void {
    this.sendButton.disabled = running || sending;
    this.stopButton.disabled = !running;
    this.approveAllButton.hidden = !running || pending === 0;
  }

  /** Clear the notice if it still says something starting with `prefix`. */
  clearNotice(prefix: string): void {
    if (this.notice.textContent?.startsWith(prefix)) {
      this.say('', false);
    }
  }

  say(text: string, isError: boolean): void {
    this.notice.textContent = text;
    this.notice.classList.toggle('k2lab-error', isError);
  }
}
