// Strings from images and records, made safe to print on a terminal. Its own
// module so that verbs which print (instance list) do not load the image code.

/**
 * A string from an image made safe to print on a terminal: C0 controls
 * (newline and tab included: one field, one line), DEL, C1 controls (0x9b is
 * CSI to some terminals) and the invisible or direction-changing format
 * characters are written as escapes. An image label is not a terminal
 * command (`\x1b]0;title\x07`, `\x1b[2J`), nor a way to forge lines.
 */
export function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };
    const code = c.charCodeAt(0);
    return (
      named[c] ??
      (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`)
    );
  });
}

/**
 * JSON.stringify output made terminal-safe the same way: it escapes C0 but
 * leaves DEL, C1 and the format characters raw; as \uXXXX escapes (they only
 * occur inside strings) the JSON still parses to the same value.
 */
export function jsonPrintable(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
