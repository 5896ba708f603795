/**
 * Talks to the k2lab server extension (`{base_url}k2lab/api/`): REST through JupyterLab's
 * `ServerConnection` (auth token and XSRF handled there) and the events WebSocket URL.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const API_NAMESPACE = 'k2lab/api';

/** An HTTP error from the k2lab API, with the server's message when it sent one. */
export class APIError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  if (init.body && !(init.headers as any)?.['Content-Type']) {
    init.headers = {
      ...(init.headers || {}),
      'Content-Type': 'application/json'
    };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as any);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON (an HTML error page): keep the text for the message
    }
  }
  if (!response.ok) {
    const message =
      (data && (data.message || data.reason || data.error)) ||
      `${response.status} ${response.statusText}`;
    throw new APIError(response.status, String(message));
  }
  return data as T;
}

export function postJSON<T>(endPoint: string, body: unknown): Promise<T> {
  return requestAPI<T>(endPoint, {
    method: 'POST',
    body: JSON.stringify(body ?? {})
  });
}

/** The events WebSocket of a session, asking for everything after `after`. */
export function eventsSocketUrl(sessionId: string, after: number): string {
  const settings = ServerConnection.makeSettings();
  let url =
    URLExt.join(
      settings.wsUrl,
      API_NAMESPACE,
      'sessions',
      encodeURIComponent(sessionId),
      'events'
    ) + `?after=${after}`;
  if (settings.token) {
    url += `&token=${encodeURIComponent(settings.token)}`;
  }
  return url;
}
