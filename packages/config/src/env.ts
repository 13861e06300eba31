// `${VAR}` and `${VAR:-default}` expansion of one string value. It runs on scalars after YAML
// parsing, so a variable's value is always text inside one value and can never add YAML structure.
import type { Parsed } from './units.js';

export type Env = Readonly<Record<string, string | undefined>>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `$${` stands for a literal `${`. `:-default` is used when the variable is unset or empty, as in
 * POSIX shells; a default cannot contain `}`.
 */
export function expandEnv(text: string, env: Env): Parsed<string> {
  let out = '';
  const unset: string[] = [];
  let i = 0;
  while (i < text.length) {
    const start = text.indexOf('${', i);
    if (start < 0) break;
    if (start > 0 && text[start - 1] === '$') {
      out += text.slice(i, start - 1) + '${';
      i = start + 2;
      continue;
    }
    const end = text.indexOf('}', start + 2);
    if (end < 0) return { ok: false, message: 'unclosed "${" (write "$${" for a literal "${")' };
    const inner = text.slice(start + 2, end);
    const sep = inner.indexOf(':-');
    const name = sep < 0 ? inner : inner.slice(0, sep);
    if (!NAME.test(name)) return { ok: false, message: `invalid variable name in "\${${inner}}"` };
    const value = env[name];
    let replacement = value ?? '';
    if (sep >= 0 && !value) replacement = inner.slice(sep + 2);
    else if (value === undefined) unset.push(name);
    out += text.slice(i, start) + replacement;
    i = end + 1;
  }
  if (unset.length > 0) {
    const list = unset.join(', ');
    return { ok: false, message: `environment variable${unset.length > 1 ? 's' : ''} ${list} not set` };
  }
  return { ok: true, value: out + text.slice(i) };
}
