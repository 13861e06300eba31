// DATA on the wire and the content the session must read from it: the framing cases both the
// framing test (at the reader) and the front test (over a socket) run.
/** [name, wire form after DATA, content] */
export const dataCases: Array<[string, string, string]> = [
  ['plain', 'Subject: a\r\n\r\nhello\r\n.\r\n', 'Subject: a\r\n\r\nhello\r\n'],
  ['empty message', '.\r\n', ''],
  ['stuffed dot lines', '..\r\n..x\r\nmid.dle\r\n...\r\n.\r\n', '.\r\n.x\r\nmid.dle\r\n..\r\n'],
  ['dot after bare LF is content, not the end', 'a\n.\nb\r\n.\r\n', 'a\n.\nb\r\n'],
  ['LF.CRLF is not the end', 'a\n.\r\nb\r\n.\r\n', 'a\n.\r\nb\r\n'],
  ['CRLF.LF is not the end', 'a\r\n.\nb\r\n.\r\n', 'a\r\n.\nb\r\n'],
  ['CR.CR is not the end', 'a\r.\rb\r\n.\r\n', 'a\r.\rb\r\n'],
  ['a leading dot after bare LF is un-stuffed', 'a\n..b\r\n.\r\n', 'a\n.b\r\n'],
  ['NUL is content for the encoder', 'a\r\n\x00.\r\nb\r\n.\r\n', 'a\r\n\x00.\r\nb\r\n'],
];
