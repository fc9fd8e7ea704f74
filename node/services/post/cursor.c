/* cursor.c - encoding and strict decoding of page cursors (see cursor.h).
 *
 * Format: base64url without padding (RFC 4648 section 5) of the text
 *
 *     1:<created_at_us>:<id>
 *
 * "1" is the format version, created_at_us a decimal without sign or leading zeros, id the
 * post's UUID in canonical lower-case form.  Text rather than binary because it costs a
 * dozen bytes and makes a cursor readable in a log after one base64 -d.
 *
 * Decoding is strict in one rule: a string is a cursor only if it is exactly what
 * gn_cursor_encode() writes for the key it decodes to.  After checking the length and the
 * alphabet, the decoder parses the text and re-encodes the key; any other spelling (padding,
 * non-zero trailing bits, "+0", upper-case hex, trailing bytes, another version) differs
 * and is refused, so one position has one cursor and garbage never reaches SQL.
 *
 * A cursor is not signed: it grants nothing.  Changing it yields another position in the
 * public feed, which anyone may ask for with a well-formed cursor anyway. */
#include "cursor.h"

#include <string.h>
#include <glib.h>

#define CURSOR_VERSION "1"
/* "1:" + up to 19 digits + ":" + 36 */
#define CURSOR_TEXT_MAX 64
/* 9999-12-31 23:59:59.999999 UTC: GDateTime's range, and far beyond any post's. */
#define CURSOR_MAX_US G_GINT64_CONSTANT (253402300799999999)

static bool
is_canonical_uuid (const char *id)
{
  if (strlen (id) != GN_UUID_CHARS || !g_uuid_string_is_valid (id))
    return false;
  for (const char *p = id; *p != '\0'; p++)
    if (g_ascii_isupper (*p))
      return false;
  return true;
}

bool
gn_cursor_encode (const gn_cursor *key, char *out, size_t out_size)
{
  if (key->created_at_us < 0 || key->created_at_us > CURSOR_MAX_US || !is_canonical_uuid (key->id))
    return false;
  char text[CURSOR_TEXT_MAX];
  int len = g_snprintf (text, sizeof text, CURSOR_VERSION ":%" G_GINT64_FORMAT ":%s",
                        key->created_at_us, key->id);
  g_autofree char *encoded = g_base64_encode ((const guchar *)text, (gsize)len);
  size_t n = 0;
  for (const char *p = encoded; *p != '\0' && *p != '='; p++)
    if (n + 1 < out_size)
      out[n++] = *p == '+' ? '-' : *p == '/' ? '_' : *p;
  if (n + 1 >= out_size)
    return false;
  out[n] = '\0';
  return true;
}

static bool
parse_text (const char *text, size_t len, gn_cursor *key)
{
  const char *prefix = CURSOR_VERSION ":";
  size_t prefix_len = strlen (prefix);
  if (len <= prefix_len || memcmp (text, prefix, prefix_len) != 0)
    return false;
  const char *digits = text + prefix_len;
  const char *colon = memchr (digits, ':', len - prefix_len);
  if (colon == NULL || colon == digits || colon - digits > 19)
    return false;
  guint64 value = 0;
  for (const char *p = digits; p < colon; p++) {
    if (!g_ascii_isdigit (*p))
      return false;
    value = value * 10 + (guint64)(*p - '0');
  }
  if (value > (guint64)G_MAXINT64)
    return false;
  size_t id_len = len - (size_t)(colon + 1 - text);
  if (id_len != GN_UUID_CHARS)
    return false;
  key->created_at_us = (int64_t)value;
  memcpy (key->id, colon + 1, GN_UUID_CHARS);
  key->id[GN_UUID_CHARS] = '\0';
  return true;
}

bool
gn_cursor_decode (const char *text, gn_cursor *key)
{
  /* Bounded before anything else: a cursor from outside is read no further than one can be. */
  size_t len = strnlen (text, GN_CURSOR_MAX_CHARS + 1);
  if (len == 0 || len > GN_CURSOR_MAX_CHARS || len % 4 == 1)
    return false;
  char standard[GN_CURSOR_MAX_CHARS + 4];
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (!(g_ascii_isalnum (c) || c == '-' || c == '_'))
      return false;
    standard[i] = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  size_t padded = len;
  while (padded % 4 != 0)
    standard[padded++] = '=';
  standard[padded] = '\0';

  gsize decoded_len = 0;
  g_autofree guchar *decoded = g_base64_decode (standard, &decoded_len);
  gn_cursor parsed;
  if (decoded == NULL || memchr (decoded, '\0', decoded_len) != NULL
      || !parse_text ((const char *)decoded, decoded_len, &parsed))
    return false;

  char canonical[GN_CURSOR_MAX_CHARS + 1];
  if (!gn_cursor_encode (&parsed, canonical, sizeof canonical) || strcmp (canonical, text) != 0)
    return false;
  *key = parsed;
  return true;
}

void
gn_cursor_timestamp (const gn_cursor *key, char out[GN_CURSOR_TIMESTAMP_CHARS])
{
  gint64 seconds = key->created_at_us / G_USEC_PER_SEC;
  int micros = (int)(key->created_at_us % G_USEC_PER_SEC);
  g_autoptr (GDateTime) time = g_date_time_new_from_unix_utc (seconds);
  g_autofree char *whole = g_date_time_format (time, "%Y-%m-%d %H:%M:%S");
  g_snprintf (out, GN_CURSOR_TIMESTAMP_CHARS, "%s.%06d+00", whole, micros);
}
