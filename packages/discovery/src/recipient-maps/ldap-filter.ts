// Expands an LDAP search filter template for one lookup key, as Postfix's ldap_table(5)
// query_filter does: %s the key, %u its local part, %d its domain, %% a percent sign. Every
// inserted value is escaped (RFC 4515 3: `*`, `(`, `)`, `\` and NUL as `\XX`), so an address can
// never widen or break the filter. A template that uses %u for a key without local part (`@domain`),
// or %d for one without a domain, is not searched at all (Postfix suppresses those queries too).
import { splitKey } from './lookup-keys.js';

export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The filter for `key`, or undefined when the template needs a part the key lacks. */
export function expandFilter(template: string, key: string): string | undefined {
  const { local, domain } = splitKey(key);
  let missing = false;
  const out = template.replace(/%([sud%])/g, (_, c: string) => {
    if (c === '%') return '%';
    if (c === 's') return escapeFilterValue(key);
    const part = c === 'u' ? local : domain;
    if (part === '') missing = true;
    return escapeFilterValue(part);
  });
  return missing ? undefined : out;
}
