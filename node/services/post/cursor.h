/* cursor.h - the opaque page cursor of the post lists (global feed, a user's posts).
 *
 * A cursor names a position in the order every post list uses, newest first:
 * (created_at DESC, id DESC).  It holds the key of the last post of the page just served; the
 * next page is the posts strictly after that key.  Callers see a short base64url string and
 * must treat it as opaque; gn_cursor_decode() accepts exactly what gn_cursor_encode() can
 * produce and nothing else (see cursor.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GN_UUID_CHARS 36
/* Upper bound of an encoded cursor's length (the real one is shorter); longer input is
 * refused before any decoding. */
#define GN_CURSOR_MAX_CHARS 96
/* "YYYY-MM-DD HH:MM:SS.uuuuuu+00" and its NUL. */
#define GN_CURSOR_TIMESTAMP_CHARS 32

typedef struct {
  int64_t created_at_us;      /* microseconds since the Unix epoch, in years 1970-9999 */
  char id[GN_UUID_CHARS + 1]; /* canonical lower-case UUID text */
} gn_cursor;

/* Writes the cursor of `key` into out (at least GN_CURSOR_MAX_CHARS + 1 bytes).  False if
 * the key cannot be a post's key (time outside 1970-9999, not a canonical lower-case UUID). */
bool gn_cursor_encode (const gn_cursor *key, char *out, size_t out_size);
/* Strict: false for anything gn_cursor_encode() would not have written. */
bool gn_cursor_decode (const char *text, gn_cursor *key);

/* The key's time as a PostgreSQL timestamptz literal, exact to the microsecond, for the
 * keyset condition "(created_at, id) < ($time, $id)". */
void gn_cursor_timestamp (const gn_cursor *key, char out[GN_CURSOR_TIMESTAMP_CHARS]);
