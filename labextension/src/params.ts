/**
 * Parameters as the publish dialog edits them: a default shown as text, text parsed back by type.
 */
import { IParameter } from './api';

/** A parameter's default as the text the user edits. */
export function parameterText(p: IParameter): string {
  if (p.type === 'str' && typeof p.default === 'string') {
    return p.default;
  }
  return JSON.stringify(p.default);
}

/** The text the user typed back into the parameter's type; throws with a readable message. */
export function parseParameter(p: IParameter, text: string): unknown {
  const bad = () => new Error(`Parameter '${p.name}' must be a ${p.type}: '${text}'`);
  switch (p.type) {
    case 'str':
      return text;
    case 'int': {
      if (!/^[-+]?\d+$/.test(text.trim())) {
        throw bad();
      }
      return Number.parseInt(text, 10);
    }
    case 'float': {
      const v = Number(text);
      if (text.trim() === '' || !Number.isFinite(v)) {
        throw bad();
      }
      return v;
    }
    case 'bool':
      if (!['true', 'false'].includes(text.trim().toLowerCase())) {
        throw bad();
      }
      return text.trim().toLowerCase() === 'true';
    default:
      try {
        return JSON.parse(text);
      } catch {
        throw bad();
      }
  }
}

/**
 * Split `text` at the commas that are not inside brackets, braces or quotes:
 * `1, [2, 3], "a,b"` → `['1', '[2, 3]', '"a,b"']`.
 */
export function splitValues(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote) {
      if (ch === '\\') {
        current += ch + (text[++i] ?? '');
        continue;
      }
      if (ch === quote) {
        quote = null;
      }
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if ('[{('.includes(ch)) {
      depth++;
    } else if (']})'.includes(ch)) {
      depth--;
    } else if (ch === ',' && depth === 0) {
      out.push(current.trim());
      current = '';
      continue;
    }
    current += ch;
  }
  out.push(current.trim());
  return out.filter(v => v !== '');
}

/**
 * The sweep grid from the values typed per parameter (comma-separated, each parsed as the
 * parameter's type); parameters left empty are not swept. Throws with a readable message.
 */
export function parseSweepGrid(
  parameters: IParameter[],
  texts: Record<string, string>
): Record<string, unknown[]> {
  const grid: Record<string, unknown[]> = {};
  for (const p of parameters) {
    const text = (texts[p.name] ?? '').trim();
    if (!text) {
      continue;
    }
    // A str value is taken as typed, minus quotes the user may have put around it.
    const values = splitValues(text).map(v =>
      p.type === 'str' ? v.replace(/^(["'])(.*)\1$/, '$2') : parseParameter(p, v)
    );
    grid[p.name] = values;
  }
  if (Object.keys(grid).length === 0) {
    throw new Error('Sweep: give comma-separated values for at least one parameter');
  }
  return grid;
}

/** How many variants `grid` makes (the product of its value counts). */
export function variantCount(grid: Record<string, unknown[]>): number {
  return Object.values(grid).reduce((n, values) => n * values.length, 1);
}
