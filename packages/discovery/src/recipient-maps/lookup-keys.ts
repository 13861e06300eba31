// The keys one recipient is looked up by, in Postfix's order for address maps (access(5),
// virtual(5)): the address itself, then the address without its extension (`alice+tag@` →
// `alice@`, `recipient_delimiter`), then `@domain`. Keys are lower case: Postfix folds case too.

/**
 * `delimiters`: each character may start an extension ('' is none). An address without `@`
 * (RFC 5321 `<postmaster>`) is only looked up as itself.
 */
export function lookupKeys(address: string, delimiters: string): string[] {
  const a = address.toLowerCase();
  if (a === '') return [];
  const at = a.lastIndexOf('@');
  const local = at < 0 ? a : a.slice(0, at);
  const domain = at < 0 ? '' : a.slice(at + 1);
  const keys = [a];
  const cut = extensionStart(local, delimiters);
  if (cut > 0) keys.push(at < 0 ? local.slice(0, cut) : `${local.slice(0, cut)}@${domain}`);
  if (domain !== '') keys.push(`@${domain}`);
  return keys;
}

/** Index of the first delimiter in `local`, or -1; a delimiter in first place starts no extension. */
function extensionStart(local: string, delimiters: string): number {
  if (delimiters === '') return -1;
  for (let i = 1; i < local.length; i++) if (delimiters.includes(local[i]!)) return i;
  return -1;
}

/** `%u` and `%d` of a key: the local part ('' for `@domain`) and the domain ('' without one). */
export function splitKey(key: string): { local: string; domain: string } {
  const at = key.lastIndexOf('@');
  return at < 0 ? { local: key, domain: '' } : { local: key.slice(0, at), domain: key.slice(at + 1) };
}
