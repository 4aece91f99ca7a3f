/**
 * The "Compare runs" view (main area): a table of the runs' parameters and metrics with the best run
 * per metric marked (click a metric's heading to flip higher/lower is better), and a chart of a chosen
 * metric over a parameter or over time. The data is compare.ts's, from `GET runs`.
 */
import { ReactWidget } from '@jupyterlab/apputils';
import * as React from 'react';
import { IRunRecord } from './api';
import { Goal, IComparison, IPoint, TIME, bestRun, chartPoints, compareRuns, defaultGoal } from './compare';

function show(v: unknown): string {
  if (typeof v === 'number') {
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  }
  return typeof v === 'string' ? v : JSON.stringify(v ?? null);
}

const W = 420;
const H = 200;
const PAD = 36;

function Chart(props: { points: IPoint[]; metric: string; x: string; best: string | null }): JSX.Element {
  const { points } = props;
  if (points.length === 0) {
    return <p className="jp-pipeline-empty">No run logged {props.metric}.</p>;
  }
  const xs = points.map(p => p.x);
  const ys = points.map(p => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => PAD + (x1 === x0 ? (W - 2 * PAD) / 2 : ((x - x0) / (x1 - x0)) * (W - 2 * PAD));
  const sy = (y: number) => H - PAD + (y1 === y0 ? -(H - 2 * PAD) / 2 : -((y - y0) / (y1 - y0)) * (H - 2 * PAD));
  const axis = props.x === TIME ? 'time' : props.x;
  return (
    <svg className="jp-pipeline-compare-chart" width={W} height={H} role="img" aria-label={`${props.metric} over ${axis}`}>
      <line x1={PAD} y1={H - PAD} x2={W - PAD} y2={H - PAD} className="jp-pipeline-chart-axis" />
      <line x1={PAD} y1={PAD} x2={PAD} y2={H - PAD} className="jp-pipeline-chart-axis" />
      <polyline className="jp-pipeline-chart-line" fill="none" points={points.map(p => `${sx(p.x)},${sy(p.y)}`).join(' ')} />
      {points.map(p => (
        <circle
          key={p.run_id}
          cx={sx(p.x)}
          cy={sy(p.y)}
          r={p.run_id === props.best ? 5 : 3.5}
          className={`jp-pipeline-chart-point${p.run_id === props.best ? ' jp-pipeline-best' : ''}`}
        >
          <title>{`${p.run_id}: ${props.metric}=${show(p.y)} at ${axis}=${p.label}`}</title>
        </circle>
      ))}
      <text x={PAD} y={PAD - 8} className="jp-pipeline-chart-label">
        {props.metric} {show(y0)}–{show(y1)}
      </text>
      <text x={W - PAD} y={H - PAD + 24} textAnchor="end" className="jp-pipeline-chart-label">
        {axis}
      </text>
    </svg>
  );
}

export class CompareView extends ReactWidget {
  constructor(
    private _runs: IRunRecord[],
    private readonly _reload?: () => Promise<IRunRecord[]>
  ) {
    super();
    this.addClass('jp-pipeline-compare');
    this._data = compareRuns(_runs);
    this.metric = this._data.metrics[0] ?? '';
    this.x = this._data.parameters[0] ?? TIME;
  }

  metric: string;
  x: string;
  goals: Record<string, Goal> = {};

  goal(metric: string): Goal {
    return this.goals[metric] ?? defaultGoal(metric);
  }

  async reload(): Promise<void> {
    if (this._reload) {
      this._runs = await this._reload();
      this._data = compareRuns(this._runs);
      this.update();
    }
  }

  protected render(): JSX.Element {
    const d = this._data;
    const set = (fn: () => void) => {
      fn();
      this.update();
    };
    const best = Object.fromEntries(d.metrics.map(m => [m, bestRun(d.rows, m, this.goal(m))]));
    return (
      <div className="jp-pipeline-compare-body">
        <p className="jp-pipeline-muted">
          {d.rows.length} run{d.rows.length === 1 ? '' : 's'}, oldest first; ★ marks the best run per metric (click a
          metric to switch between higher and lower is better).{' '}
          {this._reload && (
            <button className="jp-pipeline-link jp-pipeline-compare-reload" onClick={() => void this.reload()}>
              Refresh
            </button>
          )}
        </p>
        <table className="jp-pipeline-compare-table">
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Status</th>
              {d.parameters.map(p => (
                <th scope="col" key={`p-${p}`} className="jp-pipeline-compare-param">
                  {p}
                </th>
              ))}
              {d.metrics.map(m => (
                <th scope="col" key={`m-${m}`} className="jp-pipeline-compare-metric" data-metric={m}>
                  <button
                    className="jp-pipeline-link"
                    title="Switch between higher and lower is better"
                    onClick={() => set(() => (this.goals[m] = this.goal(m) === 'max' ? 'min' : 'max'))}
                  >
                    {m} {this.goal(m) === 'max' ? '↑' : '↓'}
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {d.rows.map(r => (
              <tr key={r.run_id} data-run-id={r.run_id}>
                <th scope="row" className="jp-pipeline-run-id">
                  {r.run_id}
                </th>
                <td>
                  <span className={`jp-pipeline-badge jp-pipeline-status-${r.status}`}>{r.status}</span>
                </td>
                {d.parameters.map(p => (
                  <td key={`p-${p}`}>{p in r.parameters ? show(r.parameters[p]) : ''}</td>
                ))}
                {d.metrics.map(m => (
                  <td key={`m-${m}`} className={best[m] === r.run_id ? 'jp-pipeline-best' : undefined}>
                    {m in r.metrics ? show(r.metrics[m]) : ''}
                    {best[m] === r.run_id && ' ★'}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
        {d.metrics.length > 0 && (
          <div className="jp-pipeline-compare-chart-box">
            <label>
              Chart{' '}
              <select
                className="jp-mod-styled jp-pipeline-compare-y"
                value={this.metric}
                onChange={ev => set(() => (this.metric = ev.target.value))}
              >
                {d.metrics.map(m => (
                  <option key={m}>{m}</option>
                ))}
              </select>
            </label>{' '}
            <label>
              over{' '}
              <select
                className="jp-mod-styled jp-pipeline-compare-x"
                value={this.x}
                onChange={ev => set(() => (this.x = ev.target.value))}
              >
                {d.parameters.map(p => (
                  <option key={p}>{p}</option>
                ))}
                <option value={TIME}>time</option>
              </select>
            </label>
            <Chart points={chartPoints(d.rows, this.metric, this.x)} metric={this.metric} x={this.x} best={best[this.metric]} />
          </div>
        )}
      </div>
    );
  }

  private _data: IComparison;
}
