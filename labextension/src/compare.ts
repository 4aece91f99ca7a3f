/**
 * Comparing runs (of a notebook, or the variants of a sweep): their parameters and metrics side by
 * side, the best run per metric, and the points of a metric over a parameter or over time.
 * Pure functions over `GET runs` records (no DOM), so they are tested on their own.
 */
import { IRunRecord } from './api';

export type Goal = 'max' | 'min';

/** The x axis of the chart over time. */
export const TIME = '__time';

export interface ICompareRow {
  run_id: string;
  status: string;
  created_at: string;
  sweep_id?: string | null;
  parameters: Record<string, unknown>;
  metrics: Record<string, number>;
}

export interface IComparison {
  /** Parameter names, those whose value differs between runs first. */
  parameters: string[];
  /** Numeric metrics any of the runs logged. */
  metrics: string[];
  rows: ICompareRow[];
}

function union(lists: string[][]): string[] {
  const out: string[] = [];
  for (const list of lists) {
    for (const name of list) {
      if (!out.includes(name)) {
        out.push(name);
      }
    }
  }
  return out;
}

/** The comparison of `runs`, oldest first (a sweep reads in the order it ran). */
export function compareRuns(runs: IRunRecord[]): IComparison {
  const ordered = [...runs].sort((a, b) => (a.created_at || '').localeCompare(b.created_at || ''));
  const rows: ICompareRow[] = ordered.map(r => ({
    run_id: r.run_id,
    status: r.status,
    created_at: r.created_at,
    sweep_id: r.sweep_id,
    parameters: r.parameters ?? {},
    metrics: Object.fromEntries(
      Object.entries(r.metrics ?? {}).filter(([, v]) => typeof v === 'number' && Number.isFinite(v))
    ) as Record<string, number>
  }));
  const names = union(rows.map(r => Object.keys(r.parameters)));
  const differs = (name: string) =>
    new Set(rows.map(r => JSON.stringify(r.parameters[name] ?? null))).size > 1;
  return {
    parameters: [...names.filter(differs), ...names.filter(n => !differs(n))],
    metrics: union(rows.map(r => Object.keys(r.metrics))),
    rows
  };
}

/** Lower is better for losses, errors and times; higher for the rest (the view lets the user flip it). */
export function defaultGoal(metric: string): Goal {
  return /loss|error|err$|mse|mae|rmse|time|latency|duration/i.test(metric) ? 'min' : 'max';
}

/** The run with the best value of `metric`, or null when no run logged it. */
export function bestRun(rows: ICompareRow[], metric: string, goal: Goal): string | null {
  let best: ICompareRow | null = null;
  for (const row of rows) {
    const v = row.metrics[metric];
    if (v === undefined) {
      continue;
    }
    if (best === null || (goal === 'max' ? v > best.metrics[metric] : v < best.metrics[metric])) {
      best = row;
    }
  }
  return best?.run_id ?? null;
}

export interface IPoint {
  x: number;
  y: number;
  run_id: string;
  /** The x value as shown (a parameter's value, or the run's start). */
  label: string;
}

/**
 * The points of `metric` over parameter `x` (numbers as they are, other values by their order of
 * appearance) or over time (`TIME`), sorted by x.
 */
export function chartPoints(rows: ICompareRow[], metric: string, x: string): IPoint[] {
  const categories: string[] = [];
  const points: IPoint[] = [];
  for (const row of rows) {
    const y = row.metrics[metric];
    if (y === undefined) {
      continue;
    }
    if (x === TIME) {
      points.push({ x: Date.parse(row.created_at), y, run_id: row.run_id, label: row.created_at });
      continue;
    }
    const value = row.parameters[x];
    if (typeof value === 'number') {
      points.push({ x: value, y, run_id: row.run_id, label: String(value) });
    } else {
      const text = JSON.stringify(value ?? null);
      if (!categories.includes(text)) {
        categories.push(text);
      }
      points.push({ x: categories.indexOf(text), y, run_id: row.run_id, label: text });
    }
  }
  return points.sort((a, b) => a.x - b.x);
}
