/**
 * The stage graph: layout by dagre (layered, top to bottom), drawn as SVG.
 */
import dagre from '@dagrejs/dagre';
import * as React from 'react';
import { IPipeline, StageStatus } from './api';
import { stageColor } from './tags';

export interface IGraphNode {
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
  gpu: number;
  inCycle: boolean;
  /** `if:EXPR` of a conditional stage (drawn dashed, with an "if" badge), else null. */
  condition: string | null;
}

/** The frame around the stages of one notebook, when the pipeline includes others. */
export interface IGraphGroup {
  /** "" for the sidebar's own notebook, else the included notebook's path relative to it. */
  notebook: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface IGraphLayout {
  nodes: IGraphNode[];
  /** `crosses`: the edge goes from one notebook's stage to another's. */
  edges: { from: string; to: string; points: { x: number; y: number }[]; crosses: boolean }[];
  groups: IGraphGroup[];
  width: number;
  height: number;
}

const NODE_HEIGHT = 30;
/** Width of the "if" badge of a conditional stage. */
const IF_BADGE = 24;
const CHAR_WIDTH = 7.5;
/** Node-id prefix of the cluster of a notebook's stages (stage names never contain a space). */
const GROUP = 'notebook ';

/** Lay the pipeline out; pure apart from dagre, so it is unit-testable. */
export function layoutPipeline(pipeline: IPipeline): IGraphLayout {
  // With included notebooks, a compound graph: a cluster per notebook around its stages.
  const grouped = (pipeline.notebooks ?? []).length > 0;
  const g = new dagre.graphlib.Graph({ multigraph: false, compound: grouped });
  g.setGraph({ rankdir: 'TB', nodesep: 18, ranksep: grouped ? 40 : 28, marginx: 8, marginy: grouped ? 20 : 8 });
  g.setDefaultEdgeLabel(() => ({}));
  const cyclic = new Set(
    pipeline.problems.filter(p => p.code === 'cycle' && p.stage).map(p => p.stage as string)
  );
  for (const stage of pipeline.stages) {
    const badge = (stage.gpu > 0 ? 44 : 0) + (stage.condition ? IF_BADGE : 0);
    g.setNode(stage.name, {
      width: Math.max(70, stage.name.length * CHAR_WIDTH + 24 + badge),
      height: NODE_HEIGHT
    });
  }
  const notebookOf = new Map(pipeline.stages.map(s => [s.name, s.notebook ?? '']));
  if (grouped) {
    for (const notebook of new Set(notebookOf.values())) {
      g.setNode(GROUP + notebook, {});
    }
    for (const [name, notebook] of notebookOf) {
      g.setParent(name, GROUP + notebook);
    }
  }
  for (const [up, down] of pipeline.edges) {
    if (g.hasNode(up) && g.hasNode(down)) {
      g.setEdge(up, down);
    }
  }
  dagre.layout(g);
  const isGroup = (name: string) => name.startsWith(GROUP);
  const gpuOf = new Map(pipeline.stages.map(s => [s.name, s.gpu]));
  const conditionOf = new Map(pipeline.stages.map(s => [s.name, s.condition ?? null]));
  const graph = g.graph();
  return {
    nodes: g.nodes().filter(name => !isGroup(name)).map(name => {
      const n = g.node(name);
      return {
        name,
        x: n.x,
        y: n.y,
        width: n.width,
        height: n.height,
        gpu: gpuOf.get(name) ?? 0,
        inCycle: cyclic.has(name),
        condition: conditionOf.get(name) ?? null
      };
    }),
    edges: g.edges().map(e => ({
      from: e.v,
      to: e.w,
      points: (g.edge(e).points ?? []) as { x: number; y: number }[],
      crosses: grouped && notebookOf.get(e.v) !== notebookOf.get(e.w)
    })),
    groups: g
      .nodes()
      .filter(isGroup)
      .map(name => {
        const n = g.node(name);
        return { notebook: name.slice(GROUP.length), x: n.x, y: n.y, width: n.width, height: n.height };
      }),
    width: graph.width ?? 0,
    height: graph.height ?? 0
  };
}

export interface IGraphProps {
  pipeline: IPipeline;
  status?: Record<string, StageStatus>;
  onSelectStage: (name: string) => void;
  /** The name of the sidebar's own notebook, on its frame when others are included. */
  title?: string;
}

export function PipelineGraph(props: IGraphProps): JSX.Element {
  const layout = React.useMemo(() => layoutPipeline(props.pipeline), [props.pipeline]);
  if (layout.nodes.length === 0) {
    return (
      <p className="jp-pipeline-empty">
        No stages yet: point at a code cell and click <strong>+ Add stage</strong> above it (or select the cell
        and press <kbd>S</kbd>), type a name, press Enter.
      </p>
    );
  }
  const path = (pts: { x: number; y: number }[]) =>
    pts.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
  return (
    <svg
      className="jp-pipeline-graph"
      role="group"
      aria-label={`Pipeline graph with ${layout.nodes.length} stages`}
      width={layout.width}
      height={layout.height}
      viewBox={`0 0 ${layout.width} ${layout.height}`}
    >
      <defs>
        <marker
          id="jp-pipeline-arrow"
          viewBox="0 0 10 10"
          refX="9"
          refY="5"
          markerWidth="7"
          markerHeight="7"
          orient="auto-start-reverse"
        >
          <path d="M 0 0 L 10 5 L 0 10 z" className="jp-pipeline-arrowhead" />
        </marker>
      </defs>
      {layout.groups.map(grp => (
        <g key={grp.notebook} className="jp-pipeline-notebook-group" data-notebook={grp.notebook}>
          <rect
            x={grp.x - grp.width / 2}
            y={grp.y - grp.height / 2}
            width={grp.width}
            height={grp.height}
            rx={8}
          />
          <text x={grp.x - grp.width / 2 + 6} y={grp.y - grp.height / 2 - 5}>
            {grp.notebook || props.title || 'this notebook'}
          </text>
        </g>
      ))}
      {layout.edges.map(e => (
        <path
          key={`${e.from}->${e.to}`}
          className={'jp-pipeline-edge' + (e.crosses ? ' jp-pipeline-edge-crosses' : '')}
          data-edge={`${e.from}->${e.to}`}
          d={path(e.points)}
          markerEnd="url(#jp-pipeline-arrow)"
        />
      ))}
      {layout.nodes.map(n => {
        const status = props.status?.[n.name];
        const left = n.x - n.width / 2;
        const top = n.y - n.height / 2;
        const label =
          `Stage ${n.name}` +
          (n.gpu ? `, ${n.gpu} GPU` : '') +
          (n.condition ? `, runs only if ${n.condition}` : '') +
          (status ? `, ${status}` : '') +
          (n.inCycle ? ', part of a cycle' : '');
        return (
          <g
            key={n.name}
            className={
              'jp-pipeline-node' +
              (status ? ` jp-pipeline-status-${status}` : '') +
              (n.inCycle ? ' jp-pipeline-node-cycle' : '') +
              (n.condition ? ' jp-pipeline-node-conditional' : '')
            }
            data-stage={n.name}
            role="button"
            tabIndex={0}
            aria-label={label}
            onClick={() => props.onSelectStage(n.name)}
            onKeyDown={ev => {
              if (ev.key === 'Enter' || ev.key === ' ') {
                ev.preventDefault();
                props.onSelectStage(n.name);
              }
            }}
          >
            <title>{label}</title>
            <rect
              className="jp-pipeline-node-box"
              x={left}
              y={top}
              width={n.width}
              height={n.height}
              rx={5}
            />
            <rect
              className="jp-pipeline-node-stripe"
              x={left}
              y={top}
              width={6}
              height={n.height}
              rx={2}
              style={{ fill: stageColor(n.name) }}
            />
            <text className="jp-pipeline-node-label" x={left + 14} y={n.y + 4}>
              {n.name}
            </text>
            {n.condition && (
              <g className="jp-pipeline-if-badge">
                <rect x={left + n.width - (n.gpu > 0 ? 44 : 0) - IF_BADGE} y={top + 7} width={20} height={16} rx={8} />
                <text x={left + n.width - (n.gpu > 0 ? 44 : 0) - IF_BADGE + 10} y={top + 19} textAnchor="middle">
                  if
                </text>
              </g>
            )}
            {n.gpu > 0 && (
              <g className="jp-pipeline-gpu-badge">
                <rect x={left + n.width - 44} y={top + 7} width={38} height={16} rx={8} />
                <text x={left + n.width - 25} y={top + 19} textAnchor="middle">
                  {`GPU ${n.gpu}`}
                </text>
              </g>
            )}
          </g>
        );
      })}
    </svg>
  );
}
