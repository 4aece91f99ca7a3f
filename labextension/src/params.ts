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
