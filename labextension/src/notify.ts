/** What a Lab notification says when a run started from this Lab ends (runcommands.ts shows it). */
import { IRunRecord } from './api';
import { formatDuration } from './runs';

/** The notification text of a run that ended. */
export function endedMessage(run: IRunRecord): string {
  const seconds =
    run.created_at && run.finished_at ? (Date.parse(run.finished_at) - Date.parse(run.created_at)) / 1000 : null;
  const took = seconds !== null ? ` in ${formatDuration(seconds)}` : '';
  const failed = Object.entries(run.stages ?? {}).find(([, s]) => s.status === 'failed');
  const why = run.status === 'failed' && failed ? `: stage ${failed[0]} failed` : '';
  return `Pipeline ${run.pipeline} ${run.status}${took}${why} (run ${run.run_id})`;
}
