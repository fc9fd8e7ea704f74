/* json-limits.c - the bounded pre-check of JSON text from outside (see json-limits.h).
 *
 * Why a guard at all.  json-glib's parser descends one C stack frame per nested array or
 * object, and 1.6 has no limit, so a request body of a few hundred kilobytes of "[" ends the
 * whole node with a stack overflow.  It also hands out strings as NUL-terminated C strings, so
 * "\u0000" in a username silently cuts the name there.  Patching either in json-glib is not
 * ours to do; refusing such text before it gets there is.
 *
 * How.  One pass over the bytes with a constant amount of state: the nesting depth (an
 * integer, not a stack: the guard does not check that "[" is closed by "]", json-glib does),
 * the number of values seen, and whether the scan is inside a string.  No recursion and no
 * allocation, so the guard itself costs O(len) time and O(1) memory whatever the input is.
 *
 *   outside strings   '{' '[' open a level (refused past max_depth) and count a value;
 *                     '}' ']' close one (refused below zero); whitespace, ',' and ':'
 *                     separate; the letters, digits and signs of literals and numbers count
 *                     one value per run; '"' starts a string (and counts a value: keys too).
 *                     Anything else is refused.  That matters: json-glib's scanner skips
 *                     comments and reads single-quoted strings, and a guard that let those
 *                     through could be made to see a string where the parser sees brackets
 *                     ('"' [[[[ ... '"'), so only the characters of the JSON grammar pass.
 *   inside a string   raw bytes below 0x20 are refused (JSON forbids them; NUL gets its own
 *                     reason), bytes from 0x80 must form well-formed UTF-8 (no overlong
 *                     forms, no surrogates, nothing past U+10FFFF), and escapes are limited
 *                     to JSON's own: \" \\ \/ \b \f \n \r \t and \uXXXX, where \u0000 is
 *                     refused and a surrogate must come as a high-low pair (a lone one has
 *                     no UTF-8 form).  GScanner's octal escapes ("\0") are not JSON and are
 *                     refused with the rest.  A string longer than max_string_bytes (counted
 *                     as written) is refused as soon as it gets there.
 *
 * At the end the depth must be back at zero and no string open. */
#include "json-limits.h"

#include <stdbool.h>
#include <string.h>

G_DEFINE_QUARK (gn - json - error - quark, gn_json_error)

typedef struct {
  const unsigned char *start;
  const unsigned char *p;
  const unsigned char *end;
  unsigned max_depth;
  size_t max_values;
  size_t max_string_bytes;
} scan;

static gboolean
fail (const scan *s, GError **error, gn_json_error_code code, const char *what)
{
  g_set_error (error, GN_JSON_ERROR, code, "%s (at byte %zu)", what, (size_t)(s->p - s->start));
  return FALSE;
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629), or 0 if there is none. */
static size_t
utf8_sequence (const unsigned char *p, const unsigned char *end)
{
  size_t avail = (size_t)(end - p);
  unsigned char c = p[0];

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    return avail >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
      return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)) /* overlong, surrogate */
      return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
      return 0;
    if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)) /* overlong, > U+10FFFF */
      return 0;
    return 4;
  }
  return 0;
}

/* Four hex digits at p into *value; false if they are not there. */
static bool
read_hex4 (const unsigned char *p, const unsigned char *end, unsigned *value)
{
  *value = 0;
  if (end - p < 4)
    return false;
  for (int i = 0; i < 4; i++) {
    int digit = g_ascii_xdigit_value ((char)p[i]);

    if (digit < 0)
      return false;
    *value = *value << 4 | (unsigned)digit;
  }
  return true;
}

/* A \u escape at s->p (the backslash); advances past it (and its low half, for a pair). */
static gboolean
scan_unicode_escape (scan *s, GError **error)
{
  unsigned unit, low;

  if (!read_hex4 (s->p + 2, s->end, &unit))
    return fail (s, error, GN_JSON_ERROR_SYNTAX, "a \\u escape needs four hex digits");
  if (unit == 0)
    return fail (s, error, GN_JSON_ERROR_NUL_IN_STRING, "a string holds \\u0000");
  if (unit >= 0xdc00 && unit <= 0xdfff)
    return fail (s, error, GN_JSON_ERROR_INVALID_UTF8, "a string holds a lone low surrogate");
  if (unit >= 0xd800 && unit <= 0xdbff) {
    if (s->end - s->p < 12 || s->p[6] != '\\' || s->p[7] != 'u'
        || !read_hex4 (s->p + 8, s->end, &low) || low < 0xdc00 || low > 0xdfff)
      return fail (s, error, GN_JSON_ERROR_INVALID_UTF8, "a string holds a lone high surrogate");
    s->p += 12;
    return TRUE;
  }
  s->p += 6;
  return TRUE;
}

/* The string whose opening quote is at s->p; leaves s->p after its closing quote. */
static gboolean
scan_string (scan *s, GError **error)
{
  const unsigned char *first = ++s->p;

  while (s->p < s->end) {
    unsigned char c = *s->p;

    if ((size_t)(s->p - first) > s->max_string_bytes)
      return fail (s, error, GN_JSON_ERROR_STRING_TOO_LONG, "a string is too long");
    if (c == '"') {
      s->p++;
      return TRUE;
    }
    if (c == '\\') {
      if (s->end - s->p < 2)
        break;
      c = s->p[1];
      if (c == 'u') {
        if (!scan_unicode_escape (s, error))
          return FALSE;
        continue;
      }
      if (c == '\0' || strchr ("\"\\/bfnrt", c) == NULL)
        return fail (s, error, GN_JSON_ERROR_SYNTAX, "a string holds an escape JSON does not have");
      s->p += 2;
      continue;
    }
    if (c == '\0')
      return fail (s, error, GN_JSON_ERROR_NUL_IN_STRING, "a string holds a NUL byte");
    if (c < 0x20)
      return fail (s, error, GN_JSON_ERROR_CONTROL_IN_STRING,
                   "a string holds a raw control character");
    if (c >= 0x80) {
      size_t n = utf8_sequence (s->p, s->end);

      if (n == 0)
        return fail (s, error, GN_JSON_ERROR_INVALID_UTF8, "a string is not valid UTF-8");
      s->p += n;
      continue;
    }
    s->p++;
  }
  return fail (s, error, GN_JSON_ERROR_SYNTAX, "a string is not terminated");
}

static bool
is_literal_char (unsigned char c)
{
  return g_ascii_isalnum (c) || c == '-' || c == '+' || c == '.';
}

gboolean
gn_json_check (const char *text, size_t len, const gn_json_limits *limits, GError **error)
{
  scan s = {
    .start = (const unsigned char *)text,
    .p = (const unsigned char *)text,
    .end = (const unsigned char *)text + len,
    .max_depth
    = limits != NULL && limits->max_depth > 0 ? limits->max_depth : GN_JSON_DEFAULT_MAX_DEPTH,
    .max_values
    = limits != NULL && limits->max_values > 0 ? limits->max_values : GN_JSON_DEFAULT_MAX_VALUES,
    .max_string_bytes = limits != NULL && limits->max_string_bytes > 0
                            ? limits->max_string_bytes
                            : GN_JSON_DEFAULT_MAX_STRING_BYTES,
  };
  size_t depth = 0, values = 0;
  bool in_literal = false;

  g_return_val_if_fail (text != NULL || len == 0, FALSE);

  while (s.p < s.end) {
    unsigned char c = *s.p;

    if (c == '"' || c == '{' || c == '[' || (is_literal_char (c) && !in_literal)) {
      if (++values > s.max_values)
        return fail (&s, error, GN_JSON_ERROR_TOO_MANY_VALUES, "too many values");
    }
    switch (c) {
      case '"':
        in_literal = false;
        if (!scan_string (&s, error))
          return FALSE;
        continue;
      case '{':
      case '[':
        if (++depth > s.max_depth) {
          g_autofree char *what = g_strdup_printf ("nested deeper than %u levels", s.max_depth);
          return fail (&s, error, GN_JSON_ERROR_TOO_DEEP, what);
        }
        in_literal = false;
        break;
      case '}':
      case ']':
        if (depth == 0)
          return fail (&s, error, GN_JSON_ERROR_SYNTAX, "a bracket closes nothing");
        depth--;
        in_literal = false;
        break;
      case ' ':
      case '\t':
      case '\n':
      case '\r':
      case ',':
      case ':':
        in_literal = false;
        break;
      default:
        if (is_literal_char (c)) {
          in_literal = true;
          break;
        }
        if (c >= 0x80 && utf8_sequence (s.p, s.end) == 0)
          return fail (&s, error, GN_JSON_ERROR_INVALID_UTF8, "the text is not valid UTF-8");
        return fail (&s, error, GN_JSON_ERROR_SYNTAX, "a character JSON does not allow here");
    }
    s.p++;
  }
  if (depth != 0)
    return fail (&s, error, GN_JSON_ERROR_SYNTAX, "an array or object is not closed");
  return TRUE;
}

const char *
gn_json_error_reason (const GError *error)
{
  static const char *const reasons[] = {
    [GN_JSON_ERROR_SYNTAX] = "invalid_json",
    [GN_JSON_ERROR_TOO_DEEP] = "json_too_deep",
    [GN_JSON_ERROR_TOO_MANY_VALUES] = "json_too_many_values",
    [GN_JSON_ERROR_STRING_TOO_LONG] = "json_string_too_long",
    [GN_JSON_ERROR_INVALID_UTF8] = "invalid_utf8",
    [GN_JSON_ERROR_NUL_IN_STRING] = "nul_in_string",
    [GN_JSON_ERROR_CONTROL_IN_STRING] = "control_in_string",
  };

  if (error == NULL || error->domain != GN_JSON_ERROR || error->code < 0
      || (size_t)error->code >= G_N_ELEMENTS (reasons))
    return "invalid_json";
  return reasons[error->code];
}
