/* fuzz-caption.c - gn_caption_check and gn_caption_parse (hashtags and @mentions).
 *
 * Checked: what passes the check parses; every hashtag and mention is non-empty valid UTF-8
 * without an ASCII space (the post service joins them with spaces), mentions are 3-30
 * characters of the username alphabet, and both lists are free of duplicates and bounded by
 * half the caption's length. */
#include "fuzz.h"

#include "post/caption.h"

static void
check_distinct (GPtrArray *items)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < items->len; i++) {
    const char *item = g_ptr_array_index (items, i);
    FUZZ_ASSERT (item[0] != '\0' && strchr (item, ' ') == NULL);
    FUZZ_ASSERT (g_utf8_validate (item, -1, NULL));
    FUZZ_ASSERT (g_hash_table_add (seen, (gpointer)item));
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *caption = fuzz_string (data, size);

  if (gn_caption_check (caption) == GN_CAPTION_OK) {
    g_autoptr (GPtrArray) hashtags = g_ptr_array_new_with_free_func (g_free);
    g_autoptr (GPtrArray) mentions = g_ptr_array_new_with_free_func (g_free);
    gn_caption_parse (caption, hashtags, mentions);
    check_distinct (hashtags);
    check_distinct (mentions);
    glong chars = g_utf8_strlen (caption, -1);
    FUZZ_ASSERT (hashtags->len <= (guint)(chars / 2) && mentions->len <= (guint)(chars / 2));
    for (guint i = 0; i < hashtags->len; i++)
      FUZZ_ASSERT (g_utf8_strlen (g_ptr_array_index (hashtags, i), -1) <= GN_HASHTAG_MAX_CHARS);
    for (guint i = 0; i < mentions->len; i++) {
      const char *mention = g_ptr_array_index (mentions, i);
      size_t len = strlen (mention);
      FUZZ_ASSERT (len >= GN_MENTION_MIN_CHARS && len <= GN_MENTION_MAX_CHARS);
      for (const char *p = mention; *p != '\0'; p++)
        FUZZ_ASSERT (g_ascii_islower (*p) || g_ascii_isdigit (*p) || *p == '_' || *p == '.');
    }
  }
  g_free (caption);
  return 0;
}
