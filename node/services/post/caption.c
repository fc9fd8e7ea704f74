/* caption.c - caption limits, hashtag and @mention parsing (see caption.h).
 *
 * A caption is valid UTF-8 of at most 2,200 characters, counted as code points like
 * PostgreSQL's char_length(), which the schema checks again.
 *
 * The parser walks the caption once, character by character (g_utf8), and remembers the
 * character before the current one.  A '#' or '@' starts a tag or mention only when that
 * previous character is not a word character (a letter or digit of any script, '_', or a
 * combining mark), so "a#b", "C#" and "someone@example.com" contain neither.
 *
 * Hashtags: '#' then the longest run of word characters, which must start with a letter,
 * digit or '_' and contain at least one letter or digit.  Anything else ends the tag:
 * punctuation ("#tag," and "#tag's" give "tag"), spaces, emoji, another '#'.  The tag is
 * NFC-normalised (a precomposed and a decomposed "e-acute" are one tag) and lower-cased
 * (g_utf8_strdown), then kept if it is at most 100 characters; a longer run is not cut down
 * to a different tag, it is no tag.
 *
 * Mentions: '@' then the longest run of ASCII letters, digits, '_' and '.', the alphabet of
 * usernames (auth.c: [a-z0-9_.]{3,30}, stored lower-cased).  Trailing dots are dropped, since
 * "thanks @alice." ends a sentence far more often than it names "alice.".  The run must be
 * 3 to 30 characters and must not continue with another word character or an '@' ("@bob@host"
 * is an address, "@josé" is not the user "jos").  Whether the user exists is not checked
 * here: mentions of unknown names are stored and simply match nobody.
 *
 * Both lists are deduplicated after normalisation ("#Tag #tag" is one tag) and keep the order
 * of first appearance.  A 2,200-character caption holds at most 1,100 of either, which bounds
 * the rows one post can add. */
#include "caption.h"

#include <string.h>

gn_caption_status
gn_caption_check (const char *caption)
{
  /* A UTF-8 character is at most 4 bytes: anything longer is too long without counting. */
  size_t bytes = strlen (caption);
  if (!g_utf8_validate (caption, (gssize)bytes, NULL))
    return GN_CAPTION_INVALID_UTF8;
  if (bytes > (size_t)GN_CAPTION_MAX_CHARS * 4
      || g_utf8_strlen (caption, (gssize)bytes) > GN_CAPTION_MAX_CHARS)
    return GN_CAPTION_TOO_LONG;
  return GN_CAPTION_OK;
}

static gboolean
is_word_char (gunichar c)
{
  return g_unichar_isalnum (c) || c == '_' || g_unichar_ismark (c);
}

static gboolean
is_username_char (gunichar c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
         || c == '.';
}

static void
append_unique (GPtrArray *list, char *item)
{
  for (guint i = 0; i < list->len; i++)
    if (strcmp (g_ptr_array_index (list, i), item) == 0) {
      g_free (item);
      return;
    }
  g_ptr_array_add (list, item);
}

/* Reads the hashtag whose text starts at `start` (just after the '#'); returns where the run
 * of word characters ends, which is where parsing continues either way. */
static const char *
read_hashtag (const char *start, GPtrArray *hashtags)
{
  const char *end = start;
  gboolean has_alnum = FALSE;
  while (*end != '\0') {
    gunichar c = g_utf8_get_char (end);
    if (!is_word_char (c) || (end == start && g_unichar_ismark (c)))
      break;
    has_alnum = has_alnum || g_unichar_isalnum (c);
    end = g_utf8_next_char (end);
  }
  if (!has_alnum)
    return end;
  g_autofree char *composed = g_utf8_normalize (start, end - start, G_NORMALIZE_NFC);
  char *tag = g_utf8_strdown (composed, -1);
  if (g_utf8_strlen (tag, -1) > GN_HASHTAG_MAX_CHARS) {
    g_free (tag);
    return end;
  }
  append_unique (hashtags, tag);
  return end;
}

/* Reads the mention whose name starts at `start` (just after the '@'); returns where
 * parsing continues. */
static const char *
read_mention (const char *start, GPtrArray *mentions)
{
  const char *end = start;
  while (is_username_char ((guchar)*end))
    end++;
  const char *resume = end;
  gunichar next = g_utf8_get_char (end);
  if (next == '@' || (next != 0 && is_word_char (next)))
    return resume;
  while (end > start && end[-1] == '.')
    end--;
  size_t len = (size_t)(end - start);
  if (len < GN_MENTION_MIN_CHARS || len > GN_MENTION_MAX_CHARS)
    return resume;
  append_unique (mentions, g_ascii_strdown (start, (gssize)len));
  return resume;
}

void
gn_caption_parse (const char *caption, GPtrArray *hashtags, GPtrArray *mentions)
{
  gunichar previous = 0;
  const char *p = caption;
  while (*p != '\0') {
    gunichar c = g_utf8_get_char (p);
    const char *next = g_utf8_next_char (p);
    if ((c == '#' || c == '@') && !is_word_char (previous)) {
      const char *end = c == '#' ? read_hashtag (next, hashtags) : read_mention (next, mentions);
      if (end > next) {
        previous = g_utf8_get_char (g_utf8_prev_char (end));
        p = end;
        continue;
      }
    }
    previous = c;
    p = next;
  }
}
