/* fuzz-cursor.c - gn_cursor_decode, the page cursor a client sends back in ?cursor=.
 *
 * Checked: decoding is strict (a cursor decodes only if encoding its key gives back exactly
 * the same text), the decoded key is in range, and its timestamp literal is well-formed. */
#include "fuzz.h"

#include "post/cursor.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = fuzz_string (data, size);
  gn_cursor key;

  if (gn_cursor_decode (text, &key)) {
    char encoded[GN_CURSOR_MAX_CHARS + 1];
    FUZZ_ASSERT (gn_cursor_encode (&key, encoded, sizeof encoded));
    FUZZ_ASSERT (strcmp (encoded, text) == 0);
    char timestamp[GN_CURSOR_TIMESTAMP_CHARS];
    gn_cursor_timestamp (&key, timestamp);
    FUZZ_ASSERT (memchr (timestamp, '\0', sizeof timestamp) != NULL);
    FUZZ_ASSERT (g_str_has_suffix (timestamp, "+00"));
  }
  g_free (text);
  return 0;
}
