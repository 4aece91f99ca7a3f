/**
 * The one place that talks HTTP to the server extension (`<base_url>/jupyter-pipeline/...`).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** URL namespace of the server extension's REST API. */
export const API_NAMESPACE = 'jupyter-pipeline';

/** Raised when the server answers with a non-2xx status; carries the server's `message`. */
export class PipelineAPIError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'PipelineAPIError';
  }
}

/**
 * Call a route of the server extension and parse its JSON answer.
 *
 * @param endPoint path under `jupyter-pipeline/`, with its query string
 * @param init fetch options (method, body)
 * @param settings server connection settings; the default ones carry the page's token/XSRF
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  if (init.body !== undefined && !hasContentType(init.headers)) {
    init = {
      ...init,
      headers: { ...(init.headers as any), 'Content-Type': 'application/json' }
    };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // An HTML error page from a proxy, say: keep it out of the UI, report the status.
      data = undefined;
    }
  }
  if (!response.ok) {
    const message =
      (data && typeof data.message === 'string' && data.message) ||
      `${response.status} ${response.statusText || 'request failed'}`;
    throw new PipelineAPIError(message, response.status);
  }
  return data as T;
}

function hasContentType(headers: HeadersInit | undefined): boolean {
  if (!headers) {
    return false;
  }
  if (headers instanceof Headers) {
    return headers.has('Content-Type');
  }
  const keys = Array.isArray(headers)
    ? headers.map(([k]) => k)
    : Object.keys(headers);
  return keys.some(k => k.toLowerCase() === 'content-type');
}
