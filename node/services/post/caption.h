/* caption.h - a post's caption: its limits, and the hashtags and @mentions found in it.
 *
 * The post service stores what gn_caption_parse() finds next to the post, so later search
 * (posts by hashtag) and notifications (who was mentioned) are index lookups instead of
 * caption scans.  The rules are in caption.c's top comment; the unit test
 * (tests/node/test-caption.c) pins the edge cases. */
#pragma once

#include <glib.h>

#define GN_CAPTION_MAX_CHARS 2200
/* A longer run after '#' is not a hashtag at all (it is not cut to size). */
#define GN_HASHTAG_MAX_CHARS 100
#define GN_MENTION_MIN_CHARS 3
#define GN_MENTION_MAX_CHARS 30

typedef enum {
  GN_CAPTION_OK,
  GN_CAPTION_INVALID_UTF8,
  GN_CAPTION_TOO_LONG, /* more than GN_CAPTION_MAX_CHARS characters (code points) */
} gn_caption_status;

gn_caption_status gn_caption_check (const char *caption);

/* Appends the distinct hashtags and mentions of `caption` (which passed gn_caption_check) to
 * the two arrays as newly allocated strings, in order of first appearance: hashtags without
 * the '#', NFC-normalised and lower-cased; mentions without the '@', lower-cased usernames.
 * Neither ever contains an ASCII space, so a space-joined list splits back unambiguously.
 * Give the arrays g_free as their element free function. */
void gn_caption_parse (const char *caption, GPtrArray *hashtags, GPtrArray *mentions);
