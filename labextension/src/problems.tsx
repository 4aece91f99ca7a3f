/**
 * Validation problems as the sidebar and the publish dialog list them: cells counted from 1, as
 * JupyterLab shows them, and `code` in messages shown as code.
 */
import * as React from 'react';
import { IProblem } from './api';

/** `text` with its backtick-quoted parts as `<code>`. */
export function MessageText(props: { text: string }): JSX.Element {
  const parts = props.text.split(/`([^`]+)`/);
  return <>{parts.map((part, i) => (i % 2 ? <code key={i}>{part}</code> : part))}</>;
}

/** "cell 3, line 2" for a problem's 0-based cell index ("child.ipynb cell 3" in an included notebook). */
export function problemPlace(p: IProblem): string | null {
  if (p.cell === null || p.cell === undefined) {
    return p.notebook ?? null;
  }
  return (p.notebook ? `${p.notebook} ` : '') + `cell ${p.cell + 1}` + (p.line ? `, line ${p.line}` : '');
}

export interface IProblemListProps {
  problems: IProblem[];
  /** Select the problem's cell (in the included notebook `notebook`, if any); without it the list is not clickable. */
  onSelectCell?: (index: number, notebook?: string) => void;
}

export function ProblemList(props: IProblemListProps): JSX.Element {
  return (
    <ul className="jp-pipeline-problems" aria-label="Problems">
      {props.problems.map((p, i) => {
        const place = problemPlace(p);
        const select = props.onSelectCell && p.cell !== null && p.cell !== undefined ? props.onSelectCell : null;
        return (
          <li key={i}>
            <button
              className={`jp-pipeline-problem jp-pipeline-severity-${p.severity}`}
              data-code={p.code}
              data-cell={p.cell ?? undefined}
              disabled={!select}
              onClick={() => select && select(p.cell as number, p.notebook)}
              title={select && place ? `Select ${place}` : undefined}
            >
              <span className="jp-pipeline-severity">{p.severity}</span>
              {place && <span className="jp-pipeline-problem-place">{place}</span>}
              <span className="jp-pipeline-problem-message">
                <MessageText text={p.message} />
              </span>
            </button>
          </li>
        );
      })}
    </ul>
  );
}
