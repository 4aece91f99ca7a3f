/**
 * Coloured stage chips on the cells of a notebook, computed from the tags (no server round trip).
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { ICellLike, stageColor, stageOfCells } from './tags';

const CELL_CLASS = 'jp-pipeline-stage-cell';
const CHIP_CLASS = 'jp-pipeline-cell-chip';

export function updateChips(panel: NotebookPanel, cells: ICellLike[]): void {
  const stages = stageOfCells(cells);
  panel.content.widgets.forEach((cell, i) => {
    const stage = stages[i] ?? null;
    const host = cell.node;
    let chip = host.querySelector<HTMLElement>(`:scope > .${CHIP_CLASS}`);
    if (!stage) {
      host.classList.remove(CELL_CLASS);
      host.style.removeProperty('--jp-pipeline-chip-color');
      chip?.remove();
      return;
    }
    host.classList.add(CELL_CLASS);
    host.style.setProperty('--jp-pipeline-chip-color', stageColor(stage));
    if (!chip) {
      chip = document.createElement('span');
      chip.className = `jp-pipeline-chip ${CHIP_CLASS}`;
      host.appendChild(chip);
    }
    if (chip.textContent !== stage) {
      chip.textContent = stage;
      chip.title = `Stage ${stage}`;
      chip.dataset.stage = stage;
    }
  });
}
