// Postfix-style map files (postmap(1) source format, "TABLE FORMAT" of access(5)): `key value` per
// logical line; a line that starts with whitespace continues the one before; blank lines and lines
// whose first non-blank character is `#` are ignored. Keys are folded to lower case. A line without a
// value, or a key seen before (the first one wins, as postmap keeps it), is reported and skipped.

export interface MapFileProblem {
  /** 1-based line number where the logical line starts. */
  line: number;
  message: string;
}

export interface ParsedMapFile {
  entries: Map<string, string>;
  problems: MapFileProblem[];
}

const BLANK = /^[ \t]*$/;
const COMMENT = /^[ \t]*#/;

export function parseMapFile(text: string): ParsedMapFile {
  const entries = new Map<string, string>();
  const problems: MapFileProblem[] = [];
  let current: { line: number; text: string } | undefined;
  const finish = () => {
    if (!current) return;
    const logical = current.text.trim();
    const m = /^(\S+)[ \t]+(\S(?:.*\S)?)$/s.exec(logical);
    if (!m) {
      problems.push({ line: current.line, message: `expected "key value", got ${quote(logical)}` });
    } else {
      const key = m[1]!.toLowerCase();
      if (entries.has(key)) problems.push({ line: current.line, message: `duplicate key "${key}" ignored` });
      else entries.set(key, m[2]!);
    }
    current = undefined;
  };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (BLANK.test(line) || COMMENT.test(line)) continue;
    if (/^[ \t]/.test(line)) {
      if (current) current.text += ` ${line.trim()}`;
      else problems.push({ line: i + 1, message: 'continuation line without a line before it' });
      continue;
    }
    finish();
    current = { line: i + 1, text: line };
  }
  finish();
  return { entries, problems };
}

function quote(s: string): string {
  const shown = JSON.stringify(s);
  return shown.length > 60 ? `${shown.slice(0, 57)}..."` : shown;
}
