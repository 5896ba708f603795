/**
 * The events WebSocket of one session: delivers each event once, in index order, and reconnects
 * by itself (with `?after=<last index>`) when the socket drops. Notebook-tool requests that ride
 * the same socket go to `onRequest`, whose answer is sent back as a `notebook.response`.
 */
import { eventsSocketUrl } from '../api';
import { IEventBase } from '../types';

export interface INotebookRequest {
  kind: 'notebook.request';
  id: string;
  op: string;
  args: { [key: string]: any };
}

export interface IConnectionHandlers {
  onEvent(index: number, event: IEventBase): void;
  onRequest(req: INotebookRequest): Promise<{ ok: boolean; result: unknown }>;
  onStatus(connected: boolean, message: string): void;
}

export class SessionConnection {
  private socket: WebSocket | null = null;
  private lastIndex: number;
  private closed = false;
  private retryDelay = 500;
  private timer: number | undefined;

  constructor(
    readonly sessionId: string,
    private handlers: IConnectionHandlers,
    after = -1
  ) {
    this.lastIndex = after;
    this.open();
  }

  get last(): number {
    return this.lastIndex;
  }

  dispose(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.socket?.close();
    this.socket = null;
  }

  private open(): void {
    if (this.closed) {
      return;
    }
    const ws = new WebSocket(eventsSocketUrl(this.sessionId, this.lastIndex));
    this.socket = ws;
    ws.onopen = () => {
      this.retryDelay = 500;
      this.handlers.onStatus(true, 'connected');
    };
    ws.onmessage = msg => this.receive(ws, msg.data);
    ws.onclose = () => {
      if (this.socket !== ws || this.closed) {
        return;
      }
      this.handlers.onStatus(false, 'disconnected, reconnecting…');
      this.timer = window.setTimeout(() => this.open(), this.retryDelay);
      this.retryDelay = Math.min(this.retryDelay * 2, 10_000);
    };
  }

  private receive(ws: WebSocket, data: unknown): void {
    let msg: any;
    try {
      msg = JSON.parse(String(data));
    } catch {
      return; // not ours to interpret
    }
    if (msg.kind === 'event' && typeof msg.index === 'number') {
      if (msg.index <= this.lastIndex) {
        return; // already seen (a reconnect overlapping the backlog)
      }
      this.lastIndex = msg.index;
      this.handlers.onEvent(msg.index, msg.event);
    } else if (msg.kind === 'notebook.request') {
      void this.answer(ws, msg as INotebookRequest);
    } else if (msg.kind === 'error') {
      this.handlers.onStatus(true, `server: ${msg.message}`);
    }
  }

  private async answer(ws: WebSocket, req: INotebookRequest): Promise<void> {
    let reply: { ok: boolean; result: unknown };
    try {
      reply = await this.handlers.onRequest(req);
    } catch (e) {
      reply = { ok: false, result: String((e as Error).message || e) };
    }
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(
        JSON.stringify({ kind: 'notebook.response', id: req.id, ...reply })
      );
    }
  }
}
