/* Caption limits and hashtag/mention parsing (node/services/post/caption.c). */
#include <string.h>
#include <glib.h>

#include "post/caption.h"

/* Parses `caption` and compares both lists with the space-separated expectations. */
static void
assert_parse (const char *caption, const char *hashtags, const char *mentions)
{
  g_autoptr (GPtrArray) tags = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_assert_cmpint (gn_caption_check (caption), ==, GN_CAPTION_OK);
  gn_caption_parse (caption, tags, names);
  g_ptr_array_add (tags, NULL);
  g_ptr_array_add (names, NULL);
  g_autofree char *got_tags = g_strjoinv (" ", (char **)tags->pdata);
  g_autofree char *got_names = g_strjoinv (" ", (char **)names->pdata);
  if (g_strcmp0 (got_tags, hashtags) != 0 || g_strcmp0 (got_names, mentions) != 0)
    g_error ("caption \"%s\": hashtags [%s] (expected [%s]), mentions [%s] (expected [%s])",
             caption, got_tags, hashtags, got_names, mentions);
}

static void
test_hashtags (void)
{
  assert_parse ("#Tag #tag #TAG", "tag", "");
  assert_parse ("sunset #beach #sunset #beach", "beach sunset", "");
  assert_parse ("#a#b", "a", "");
  assert_parse ("a#b C# x_#y 9#z", "", "");
  assert_parse ("##double", "double", "");
  assert_parse ("#snake_case_2024 #_under #2024", "snake_case_2024 _under 2024", "");
  assert_parse ("#___ # #! #", "", "");
  assert_parse ("(#paren) [#bracket] \"#quoted\"", "paren bracket quoted", "");
  assert_parse ("start#mid", "", "");
  assert_parse ("line one\n#newline\t#tab", "newline tab", "");
}

static void
test_hashtag_punctuation_and_emoji (void)
{
  assert_parse ("Great day #sun, #sea. #fun! #why? #what's #end", "sun sea fun why what end", "");
  assert_parse ("#tag🔥 🔥#fire #🔥 #❤️love", "tag fire", "");
  assert_parse ("#tag-with-dash #tag.dot #tag/slash", "tag", "");
  /* Within a URL the '#' follows a word character or no tag character follows it. */
  assert_parse ("see https://example.com/page#section and example.com/#/route", "", "");
}

static void
test_hashtag_unicode (void)
{
  assert_parse ("#Москва #москва #МОСКВА", "москва", "");
  assert_parse ("#東京 #café #Straße", "東京 café straße", "");
  /* Precomposed U+00E9 and e + U+0301 are one tag after NFC. */
  assert_parse ("#caf\xc3\xa9 #cafe\xcc\x81", "caf\xc3\xa9", "");
  /* Devanagari vowel signs are combining marks inside the word. */
  assert_parse ("#नमस्ते", "नमस्ते", "");
  /* A letter right before '#' (any script) means it is not a tag. */
  assert_parse ("я#тег", "", "");
}

static void
test_hashtag_length (void)
{
  g_autofree char *hundred = g_strnfill (100, 'a');
  g_autofree char *hundred_one = g_strnfill (101, 'b');
  g_autofree char *caption = g_strdup_printf ("#%s #%s #ok", hundred, hundred_one);
  g_autofree char *expected = g_strdup_printf ("%s ok", hundred);
  assert_parse (caption, expected, "");

  /* 100 two-byte characters are 100 characters. */
  GString *cyrillic = g_string_new ("#");
  for (int i = 0; i < 100; i++)
    g_string_append (cyrillic, "ж");
  assert_parse (cyrillic->str, cyrillic->str + 1, "");
  g_string_append (cyrillic, "ж");
  assert_parse (cyrillic->str, "", "");
  g_string_free (cyrillic, TRUE);
}

static void
test_mentions (void)
{
  assert_parse ("hi @Alice and @alice and @ALICE", "", "alice");
  assert_parse ("@bob, @carol. @dave! (@erin) @frank's", "", "bob carol dave erin frank");
  assert_parse ("@user.name @under_score @abc", "", "user.name under_score abc");
  assert_parse ("thanks @alice.", "", "alice");
  assert_parse ("@alice...", "", "alice");
  assert_parse ("@@double", "", "double");
  assert_parse ("@ab @a", "", "");
  assert_parse ("@@", "", "");
}

static void
test_mentions_not_addresses (void)
{
  assert_parse ("write to email@host.com or me@example.org", "", "");
  assert_parse ("x@alice", "", "");
  assert_parse ("@bob@mastodon.social", "", "");
  /* A non-ASCII letter after the name: not a username at all, not a shorter one. */
  assert_parse ("@josé @jos", "", "jos");
  assert_parse ("жж@alice", "", "");
}

static void
test_mention_length (void)
{
  g_autofree char *thirty = g_strnfill (30, 'u');
  g_autofree char *thirty_one = g_strnfill (31, 'v');
  g_autofree char *caption = g_strdup_printf ("@%s @%s", thirty, thirty_one);
  assert_parse (caption, "", thirty);
}

static void
test_mixed (void)
{
  assert_parse ("#tag@alice @bob#tag2", "tag", "bob");
  assert_parse ("Met @Alice at #Berlin with @bob_b #berlin #Travel", "berlin travel",
                "alice bob_b");
  assert_parse ("", "", "");
  assert_parse ("no tags here", "", "");
}

static void
test_caption_limits (void)
{
  g_autofree char *ascii = g_strnfill (2200, 'x');
  g_assert_cmpint (gn_caption_check (ascii), ==, GN_CAPTION_OK);
  g_autofree char *ascii_over = g_strnfill (2201, 'x');
  g_assert_cmpint (gn_caption_check (ascii_over), ==, GN_CAPTION_TOO_LONG);

  /* Characters, not bytes: 2,200 four-byte emoji are fine, one more is not. */
  GString *emoji = g_string_new (NULL);
  for (int i = 0; i < 2200; i++)
    g_string_append (emoji, "😀");
  g_assert_cmpuint (emoji->len, ==, 8800);
  g_assert_cmpint (gn_caption_check (emoji->str), ==, GN_CAPTION_OK);
  g_string_append (emoji, "😀");
  g_assert_cmpint (gn_caption_check (emoji->str), ==, GN_CAPTION_TOO_LONG);
  g_string_free (emoji, TRUE);

  g_assert_cmpint (gn_caption_check (""), ==, GN_CAPTION_OK);
  g_assert_cmpint (gn_caption_check ("bad \xff byte"), ==, GN_CAPTION_INVALID_UTF8);
  g_assert_cmpint (gn_caption_check ("overlong \xc0\xaf slash"), ==, GN_CAPTION_INVALID_UTF8);
  g_assert_cmpint (gn_caption_check ("cut \xe2\x82"), ==, GN_CAPTION_INVALID_UTF8);
}

/* A caption full of tags: every one separated by a space is found, and none glued to the
 * previous one is. */
static void
test_many_tags (void)
{
  g_autoptr (GPtrArray) tags = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  GString *caption = g_string_new (NULL);
  for (int i = 0; i < 550; i++)
    g_string_append_printf (caption, "#%c%c ", 'a' + i % 26, 'a' + i / 26);
  g_assert_cmpuint (caption->len, ==, GN_CAPTION_MAX_CHARS);
  g_assert_cmpint (gn_caption_check (caption->str), ==, GN_CAPTION_OK);
  gn_caption_parse (caption->str, tags, names);
  g_assert_cmpuint (tags->len, ==, 550);
  g_assert_cmpstr (g_ptr_array_index (tags, 0), ==, "aa");
  g_assert_cmpstr (g_ptr_array_index (tags, 549), ==, "dv");
  g_string_free (caption, TRUE);

  caption = g_string_new (NULL);
  for (int i = 0; i < 733; i++)
    g_string_append_printf (caption, "#%c%c", 'a' + i % 26, 'a' + (i / 26) % 26);
  g_ptr_array_set_size (tags, 0);
  gn_caption_parse (caption->str, tags, names);
  g_assert_cmpuint (tags->len, ==, 1);
  g_assert_cmpuint (names->len, ==, 0);
  g_string_free (caption, TRUE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/post/caption/hashtags", test_hashtags);
  g_test_add_func ("/post/caption/hashtag-punctuation-emoji", test_hashtag_punctuation_and_emoji);
  g_test_add_func ("/post/caption/hashtag-unicode", test_hashtag_unicode);
  g_test_add_func ("/post/caption/hashtag-length", test_hashtag_length);
  g_test_add_func ("/post/caption/mentions", test_mentions);
  g_test_add_func ("/post/caption/mentions-not-addresses", test_mentions_not_addresses);
  g_test_add_func ("/post/caption/mention-length", test_mention_length);
  g_test_add_func ("/post/caption/mixed", test_mixed);
  g_test_add_func ("/post/caption/limits", test_caption_limits);
  g_test_add_func ("/post/caption/many-tags", test_many_tags);
  return g_test_run ();
}
