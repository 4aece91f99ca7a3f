import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, it } from 'vitest';
import * as api from '../src/api';
import { PipelineAPIError, requestAPI } from '../src/request';

interface ICall {
  url: string;
  method: string;
  body: any;
  headers: Headers;
}

/** Settings whose fetch records each request and answers from `routes`. */
function fakeServer(routes: Record<string, { status?: number; body?: unknown }>) {
  const calls: ICall[] = [];
  const fetch = async (input: RequestInfo, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    const url = new URL(request.url);
    // ServerConnection appends a cache-busting timestamp (`?1795305124416`) to requests.
    url.search = url.search.replace(/[?&]\d{10,}$/, '');
    const text = await request.text();
    calls.push({
      url: url.pathname + url.search,
      method: request.method,
      body: text ? JSON.parse(text) : undefined,
      headers: request.headers
    });
    const key = `${request.method} ${url.pathname}${url.search}`;
    const answer = routes[key] ?? { status: 404, body: { message: `no route ${key}` } };
    return new Response(answer.body === undefined ? '' : JSON.stringify(answer.body), {
      status: answer.status ?? 200,
      headers: { 'Content-Type': 'application/json' }
    });
  };
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/lab-base/',
    wsUrl: 'ws://localhost:8888/lab-base/',
    token: 'secret-token',
    fetch: fetch as any,
    Request,
    Headers
  } as any);
  return { calls, settings };
}

const PIPELINE: api.IPipeline = {
  name: 'digits',
  stages: [
    {
      name: 'load',
      cells: [4],
      after: [],
      depends_on: [],
      inputs: [],
      outputs: ['images'],
      parameters: [],
      gpu: 0,
      options: { gpu: 0, gpu_type: null, cpu: null, memory: null, image: null, retries: 0, timeout: null, cache: true }
    }
  ],
  edges: [],
  parameters: [{ name: 'epochs', default: 5, type: 'int', cell: 2 }],
  problems: []
};

const RUN = (id: string, created: string, notebook = 'digits.ipynb'): api.IRunRecord => ({
  run_id: id,
  pipeline: 'digits',
  notebook,
  status: 'running',
  target: 'local',
  parameters: {},
  store: 'file:///tmp/s',
  created_at: created,
  finished_at: null,
  stages: {},
  edges: [],
  metrics: {},
  url: null
});

describe('requestAPI', () => {
  it('joins the base url and namespace, sends the token and parses JSON', async () => {
    const { calls, settings } = fakeServer({ 'GET /lab-base/jupyter-pipeline/config': { body: { store: 'x' } } });
    expect(await requestAPI('config', {}, settings)).toEqual({ store: 'x' });
    expect(calls[0].url).toBe('/lab-base/jupyter-pipeline/config');
    expect(calls[0].headers.get('Authorization')).toBe('token secret-token');
  });

  it("raises PipelineAPIError with the server's message and status", async () => {
    const { settings } = fakeServer({
      'GET /lab-base/jupyter-pipeline/runs/nope': { status: 404, body: { message: 'run nope not found' } }
    });
    const error = await api.getRun('nope', settings).catch(e => e);
    expect(error).toBeInstanceOf(PipelineAPIError);
    expect(error.status).toBe(404);
    expect(error.message).toBe('run nope not found');
  });

  it('falls back to the status line for a body without a message', async () => {
    const { settings } = fakeServer({ 'GET /lab-base/jupyter-pipeline/config': { status: 500 } });
    await expect(api.getConfig(settings)).rejects.toThrow(/500/);
  });
});

describe('endpoint functions', () => {
  it('GET pipeline?path= encodes the path', async () => {
    const { calls, settings } = fakeServer({
      'GET /lab-base/jupyter-pipeline/pipeline?path=dir%20a%2Fdigits.ipynb': { body: PIPELINE }
    });
    expect(await api.getPipeline('dir a/digits.ipynb', settings)).toEqual(PIPELINE);
    expect(calls[0].method).toBe('GET');
  });

  it('POST pipeline sends unsaved content, and says null when the route is missing', async () => {
    const ok = fakeServer({ 'POST /lab-base/jupyter-pipeline/pipeline': { body: PIPELINE } });
    expect(await api.validateContent('d.ipynb', { cells: [] }, ok.settings)).toEqual(PIPELINE);
    expect(ok.calls[0].body).toEqual({ path: 'd.ipynb', content: { cells: [] } });
    expect(ok.calls[0].headers.get('Content-Type')).toBe('application/json');

    const old = fakeServer({ 'POST /lab-base/jupyter-pipeline/pipeline': { status: 405, body: { message: 'no' } } });
    expect(await api.validateContent('d.ipynb', {}, old.settings)).toBeNull();

    const broken = fakeServer({ 'POST /lab-base/jupyter-pipeline/pipeline': { status: 400, body: { message: 'bad json' } } });
    await expect(api.validateContent('d.ipynb', {}, broken.settings)).rejects.toThrow('bad json');
  });

  it('POST runs with a sweep returns the sweep id', async () => {
    const { calls, settings } = fakeServer({ 'POST /lab-base/jupyter-pipeline/runs': { body: { sweep_id: 's1' } } });
    const request: api.IRunRequest = {
      path: 'd.ipynb',
      target: 'local',
      parameters: { epochs: 1 },
      sweep: { grid: { lr: [0.1, 0.01] }, metric: 'accuracy', goal: 'max' }
    };
    expect(await api.startRun(request, settings)).toEqual({ sweep_id: 's1' });
    expect(calls[0].body).toEqual(request);
  });

  it('POST runs sends the request and returns the run id', async () => {
    const { calls, settings } = fakeServer({ 'POST /lab-base/jupyter-pipeline/runs': { body: { run_id: 'r1' } } });
    const request: api.IRunRequest = { path: 'd.ipynb', target: 'local', parameters: { epochs: 1 }, experiment: 'e' };
    expect(await api.startRun(request, settings)).toEqual({ run_id: 'r1' });
    expect(calls[0].body).toEqual(request);
  });

  it('GET runs, GET runs/ID, DELETE runs/ID, stage notebook, compile', async () => {
    const runs = [RUN('a', '2026-01-01T00:00:00Z')];
    const { calls, settings } = fakeServer({
      'GET /lab-base/jupyter-pipeline/runs': { body: { runs } },
      'GET /lab-base/jupyter-pipeline/runs?notebook=sub%2Fd.ipynb': { body: { runs } },
      'GET /lab-base/jupyter-pipeline/runs/a': { body: runs[0] },
      'DELETE /lab-base/jupyter-pipeline/runs/a': { body: { run_id: 'a', status: 'cancelled' } },
      'GET /lab-base/jupyter-pipeline/runs/a/stages/my%20stage/notebook': { body: { nbformat: 4, cells: [] } },
      'POST /lab-base/jupyter-pipeline/compile': { body: { yaml: 'x: 1' } }
    });
    expect(await api.listRuns(undefined, settings)).toEqual(runs);
    expect(await api.listRuns('sub/d.ipynb', settings)).toEqual(runs);
    expect(await api.getRun('a', settings)).toEqual(runs[0]);
    await api.cancelRun('a', settings);
    expect(calls[3].method).toBe('DELETE');
    expect(await api.getStageNotebook('a', 'my stage', settings)).toEqual({ nbformat: 4, cells: [] });
    expect(await api.compilePipeline('d.ipynb', true, settings)).toEqual({ yaml: 'x: 1' });
    expect(calls[5].body).toEqual({ path: 'd.ipynb', save: true });
  });

  it('POST runs/ID/resume and POST runs/ID/stages/NAME/debug', async () => {
    const { calls, settings } = fakeServer({
      'POST /lab-base/jupyter-pipeline/runs/a%20b/resume': { status: 202, body: { run_id: 'a b' } },
      'POST /lab-base/jupyter-pipeline/runs/a/stages/my%20stage/debug': {
        body: { path: 'nb-debug-my stage.ipynb', run_id: 'a', stage: 'my stage' }
      },
      'POST /lab-base/jupyter-pipeline/runs/gone/stages/x/debug': { status: 404, body: { message: "No run 'gone'" } }
    });
    expect(await api.resumeRun('a b', settings)).toEqual({ run_id: 'a b' });
    expect(calls[0].method).toBe('POST');
    expect((await api.debugStage('a', 'my stage', settings)).path).toBe('nb-debug-my stage.ipynb');
    await expect(api.debugStage('gone', 'x', settings)).rejects.toThrow("No run 'gone'");
  });
});

describe('run helpers', () => {
  it('orders newest first and matches runs to notebooks', () => {
    const runs = [RUN('b', '2026-01-02T00:00:00Z'), RUN('c', '2026-01-03T00:00:00Z'), RUN('a', '2026-01-01T00:00:00Z')];
    expect(api.newestFirst(runs).map(r => r.run_id)).toEqual(['c', 'b', 'a']);
    expect(api.runBelongsTo(RUN('x', '', '/srv/root/sub/digits.ipynb'), 'sub/digits.ipynb')).toBe(true);
    expect(api.runBelongsTo(RUN('x', '', 'sub/digits.ipynb'), 'sub/digits.ipynb')).toBe(true);
    expect(api.runBelongsTo(RUN('x', '', 'other.ipynb'), 'digits.ipynb')).toBe(false);
  });
});
