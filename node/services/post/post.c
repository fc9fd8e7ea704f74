/* post.c - the post service: posts, their ordered media, hashtags and mentions.
 *
 * Data (schema "post", see migrations/): posts; post_media, a post's 1 to 10 media ids in
 * order (position 0 is the carousel's cover); hashtags and mentions as caption.c parses them
 * from the caption, re-derived whenever the caption changes.  Media themselves belong to the
 * media service: this service stores their ids only, and talks to it over gRPC.
 *
 * Creating a post.  The caller must be signed in (the rpc layer verified the bearer token).
 * Caption, media count and ids are checked before anything is touched.  The post and the media
 * live in two services, so no transaction can cover both, and none is held open across the call
 * from one to the other (its row locks would wait on the network).  Instead three short steps,
 * each of which leaves a state that a failure at any later point can finish or undo:
 *   1. one transaction inserts the post, its media, hashtags and mentions in state "pending",
 *      which no read ever shows, and commits;
 *   2. MediaService.AttachMedia marks the media as used by that post id, with this call as
 *      parent so the caller's authorization (the media must be theirs), request id and
 *      deadline go along.  It is all or nothing, and idempotent for the same post id;
 *   3. a second transaction publishes the post: state "published", created_at stamped now.
 * A definite refusal at step 2 (not the caller's media, not confirmed, in another post) has
 * attached nothing: the pending post is deleted and the answer is INVALID_ARGUMENT, reason
 * "invalid_media" or "media_not_yours" (API v1 answers 400 for any media that is not the
 * caller's confirmed upload), with the media service's message.  If step 3 fails, or step 2
 * timed out (the media service refuses to commit once the deadline passed, so nothing can
 * still attach afterwards), the post is abandoned: claimed as state "abandoned", which nothing
 * ever publishes, then DetachMedia releases whatever was attached and the post is deleted, on
 * a short timeout of their own, since the caller's deadline may be what failed.  Whatever is left -
 * a crash between the steps, an abandon that failed too, the media service unreachable - is settled
 * by the healing job (below).  The unique index on post_media.media_id settles two posts racing for
 * one media at step 1: the second fails.
 *
 * Healing.  A periodic job (the same thread as the outbox retries, every media.sweep_interval)
 * takes pending posts older than post.pending_grace and asks the media service, on behalf of
 * the author with a short-lived token it signs, which media are attached to each: all of the
 * post's -> publish it (the caller may have been told it failed: like any write whose answer
 * was lost, it happened); fewer -> claim it as abandoned, DetachMedia, delete it.  Abandoned
 * posts left by a failed undo are detached and deleted the same way.  The claim is what keeps
 * the two writers apart: publishing and claiming both need the state "pending", so a post is
 * either published or undone, never published with its media released.  The grace is what keeps
 * the job away from a CreatePost still in flight: that call's AttachMedia gets at most half of
 * the grace as its deadline, and after its deadline the media service no longer commits it.
 *
 * Deleting a post (author only) removes its rows and, in the same transaction, writes its
 * media ids into post.media_deletions (a transactional outbox).  After the commit it asks
 * MediaService.DeleteMedia, with the author's authorization, to remove the media rows, stored
 * files and CDN copies, and clears the outbox row once that succeeded.  If the call fails
 * (media down, a timeout) the post's deletion stands and a retry loop calls again later with
 * growing pauses, on behalf of the author with a short-lived token it signs for that call, so
 * a deleted post's media always go in the end.
 *
 * Deadlines.  Writes run between gn_service_begin and gn_service_commit: the caller's remaining
 * deadline is the statement timeout, and a transaction whose caller gave up does not commit.
 * The undo steps above are not bound by it.
 *
 * Paging.  Every list is ordered newest first by the key (created_at DESC, id DESC), which is
 * unique (id breaks ties) and never changes for a post.  A page is at most `limit` posts
 * (default 20, at most 100), read as limit + 1 rows so has_more needs no count.  Its
 * next_cursor (cursor.c) holds the key of the page's last post, and the next page is the posts
 * whose key is strictly smaller: "(created_at, id) < ($time, $id)", an index range scan on
 * posts_feed_idx (posts_user_feed_idx for one user).  Why this is stable while posts are being
 * created concurrently:
 *   - no duplicates: each page starts strictly below the smallest key seen so far, so keys
 *     only decrease from page to page and no post can be returned twice;
 *   - no gaps: a post that existed when paging began has a fixed key below the starting
 *     point; each page returns all visible posts between its cursor and its own last key
 *     (it takes the first rows in key order), so the post is returned on the page whose
 *     range covers its key.  New posts get newer keys (above the start) or, rarely, land
 *     behind a reader's cursor; either way they are not owed to that reader.
 * Offset paging (?offset= of API v1's web client) is kept, but it counts rows at read time:
 * a post created between two requests shifts everything by one and repeats a post.  Each page
 * therefore also carries a next_cursor, so a client can switch to cursor paging at any time.
 *
 * Why created_at is clock_timestamp(), and set last.  now() is frozen at the start of the
 * transaction, so every row a transaction writes would share one time (their order then
 * decided by random ids), and a post would be stamped when it was first written as pending,
 * before the media call.  A post stamped at t becomes visible only when it is published; a
 * reader whose cursor passed t in between never sees it in that paging session.  That is
 * allowed (the post did not exist when paging began) but it is a post missed, so publishing
 * stamps created_at with clock_timestamp(), after the media call, which shrinks that window to
 * the commit itself and keeps the feed in the order posts appeared.  Correctness (no duplicates, no
 * gaps) needs only the unique, immutable key; freshness needs the late stamp.  Both columns default
 * to clock_timestamp() for rows written any other way.
 *
 * Lists of strings cross the SQL boundary joined by single spaces (string_to_array on the way
 * in, string_agg on the way out): UUIDs, hashtags and usernames never contain a space, which
 * caption.c guarantees and the schema checks. */
#include "service.h"

#include <stdlib.h>
#include <string.h>

#include "caption.h"
#include "common.pb-c.h"
#include "cursor.h"
#include "failpoint.h"
#include "log.h"
#include "media.pb-c.h"
#include "pg.h"
#include "post.pb-c.h"

#define MAX_MEDIA_PER_POST 10
#define MAX_IDS_PER_BATCH 100
#define DEFAULT_PAGE_LIMIT 20
#define MAX_PAGE_LIMIT 100
/* Deeper offsets cost a scan of every row skipped: cursors page that far cheaply. */
#define MAX_PAGE_OFFSET 100000

typedef struct {
  char *database_url;
  char *media_address;
  const gn_token_key *token_key;

  int retry_interval_s;
  int pending_grace_s;
  gn_periodic *retrier; /* the outbox retries and the healing of pending posts */
} post_state;

static post_state *
state_of (gn_rpc_call *call)
{
  return gn_rpc_call_service_data (call);
}

static PGconn *
conn_or_fail (gn_rpc_call *call, grpc_status_code *code)
{
  return gn_service_db (call, state_of (call)->database_url, code);
}

static gboolean
is_uuid (const char *s)
{
  return s != NULL && g_uuid_string_is_valid (s);
}

static grpc_status_code
post_not_found (gn_rpc_call *call)
{
  return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "post_not_found", "no such post");
}

/* --- captions and media ids ----------------------------------------------------------- */

static grpc_status_code
check_caption (gn_rpc_call *call, const char *caption)
{
  switch (gn_caption_check (caption)) {
    case GN_CAPTION_OK:
      return GRPC_STATUS_OK;
    case GN_CAPTION_INVALID_UTF8:
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_caption",
                               "the caption must be valid UTF-8");
    case GN_CAPTION_TOO_LONG:
      break;
  }
  return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "caption_too_long",
                           "the caption must be at most %d characters", GN_CAPTION_MAX_CHARS);
}

static char *
join_words (GPtrArray *words)
{
  GString *joined = g_string_new (NULL);
  for (guint i = 0; i < words->len; i++) {
    if (i > 0)
      g_string_append_c (joined, ' ');
    g_string_append (joined, g_ptr_array_index (words, i));
  }
  return g_string_free (joined, FALSE);
}

/* The hashtags and mentions of a checked caption, each list joined by spaces. */
typedef struct {
  char *hashtags;
  char *mentions;
} caption_tags;

static void
caption_tags_parse (const char *caption, caption_tags *tags)
{
  g_autoptr (GPtrArray) hashtags = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) mentions = g_ptr_array_new_with_free_func (g_free);
  gn_caption_parse (caption, hashtags, mentions);
  tags->hashtags = join_words (hashtags);
  tags->mentions = join_words (mentions);
}

static void
caption_tags_clear (caption_tags *tags)
{
  g_clear_pointer (&tags->hashtags, g_free);
  g_clear_pointer (&tags->mentions, g_free);
}

/* Checks CreatePost's media ids: 1 to 10 UUIDs, no id twice.  Fills ids[] with their
 * lower-case forms (arena) and *joined with them joined by spaces. */
static grpc_status_code
check_media_ids (gn_rpc_call *call, char *const *media_ids, size_t n, char **ids, char **joined)
{
  gn_arena *arena = gn_rpc_call_arena (call);
  if (n == 0)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "media_required",
                             "a post needs at least one photo or video");
  if (n > MAX_MEDIA_PER_POST)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "too_many_media",
                             "a post holds at most %d photos or videos", MAX_MEDIA_PER_POST);
  GString *list = g_string_new (NULL);
  for (size_t i = 0; i < n; i++) {
    if (!is_uuid (media_ids[i])) {
      g_string_free (list, TRUE);
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_media_id",
                               "media id %zu is not a UUID", i + 1);
    }
    ids[i] = gn_arena_strdup (arena, media_ids[i]);
    for (char *c = ids[i]; *c != '\0'; c++)
      *c = g_ascii_tolower (*c);
    for (size_t j = 0; j < i; j++)
      if (strcmp (ids[j], ids[i]) == 0) {
        g_string_free (list, TRUE);
        return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "duplicate_media",
                                 "media %s appears twice in the post", ids[i]);
      }
    g_string_append_printf (list, "%s%s", i > 0 ? " " : "", ids[i]);
  }
  *joined = gn_arena_strdup (arena, list->str);
  g_string_free (list, TRUE);
  return GRPC_STATUS_OK;
}

/* --- rows to messages ------------------------------------------------------------------ */

/* Every query that returns posts selects these, from post.posts as p. */
#define POST_COLUMNS                                                                               \
  "p.id, p.user_id, p.caption, (extract(epoch FROM p.created_at) * 1000000)::int8,"                \
  " (extract(epoch FROM p.updated_at) * 1000000)::int8,"                                           \
  " (SELECT coalesce(string_agg(m.media_id::text, ' ' ORDER BY m.position), '')"                   \
  "  FROM post.post_media m WHERE m.post_id = p.id),"                                              \
  " (SELECT coalesce(string_agg(h.tag, ' ' ORDER BY h.position), '')"                              \
  "  FROM post.hashtags h WHERE h.post_id = p.id),"                                                \
  " (SELECT coalesce(string_agg(n.username, ' ' ORDER BY n.position), '')"                         \
  "  FROM post.mentions n WHERE n.post_id = p.id)"

#define FEED_ORDER " ORDER BY p.created_at DESC, p.id DESC"
/* Every read of posts.  Pending posts are CreatePost's steps in flight (see the top comment). */
#define PUBLISHED "p.state = 'published'"

/* Splits a space-joined list (see the top comment) into an arena array. */
static char **
split_words (gn_arena *arena, const char *text, size_t *n)
{
  *n = 0;
  if (text[0] == '\0')
    return NULL;
  size_t count = 1;
  for (const char *p = text; *p != '\0'; p++)
    count += *p == ' ';
  char **words = gn_arena_alloc (arena, sizeof *words * count);
  char *copy = gn_arena_strdup (arena, text);
  for (char *word = copy;;) {
    char *space = strchr (word, ' ');
    words[(*n)++] = word;
    if (space == NULL)
      break;
    *space = '\0';
    word = space + 1;
  }
  return words;
}

static Generia__Post__V1__Post *
post_from_row (gn_arena *arena, PGresult *res, int row)
{
  Generia__Post__V1__Post *post = gn_arena_alloc (arena, sizeof *post);
  generia__post__v1__post__init (post);
  post->id = gn_arena_strdup (arena, PQgetvalue (res, row, 0));
  post->user_id = gn_arena_strdup (arena, PQgetvalue (res, row, 1));
  post->caption = gn_arena_strdup (arena, PQgetvalue (res, row, 2));
  post->created_at_us = g_ascii_strtoll (PQgetvalue (res, row, 3), NULL, 10);
  post->updated_at_us = g_ascii_strtoll (PQgetvalue (res, row, 4), NULL, 10);
  post->media_ids = split_words (arena, PQgetvalue (res, row, 5), &post->n_media_ids);
  post->hashtags = split_words (arena, PQgetvalue (res, row, 6), &post->n_hashtags);
  post->mentions = split_words (arena, PQgetvalue (res, row, 7), &post->n_mentions);
  return post;
}

/* --- paging ---------------------------------------------------------------------------- */

typedef struct {
  int limit;
  int offset;
  /* Offsets past MAX_PAGE_OFFSET answer an empty last page without reading: API v1's web
   * client expects a page there, and no feed is paged that deep by offset. */
  bool beyond;
  bool has_cursor;
  gn_cursor after;
  /* Parameters of the cursor condition. */
  char after_time[GN_CURSOR_TIMESTAMP_CHARS];
  char fetch[16]; /* limit + 1 */
  char skip[16];  /* offset */
} page_request;

static grpc_status_code
parse_page (gn_rpc_call *call, const Generia__Common__V1__PageRequest *page, page_request *out)
{
  memset (out, 0, sizeof *out);
  out->limit = DEFAULT_PAGE_LIMIT;
  if (page != NULL) {
    if (page->limit < 0 || page->offset < 0)
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_page",
                               "limit and offset must not be negative");
    if (page->limit > 0)
      out->limit = MIN (page->limit, MAX_PAGE_LIMIT);
    out->offset = page->offset;
    out->beyond = page->offset > MAX_PAGE_OFFSET;
    if (page->cursor != NULL && page->cursor[0] != '\0') {
      if (page->offset > 0)
        return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_page",
                                 "give either a cursor or an offset, not both");
      if (!gn_cursor_decode (page->cursor, &out->after))
        return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_cursor",
                                 "the cursor is not valid; start again from the first page");
      out->has_cursor = true;
      gn_cursor_timestamp (&out->after, out->after_time);
    }
  }
  g_snprintf (out->fetch, sizeof out->fetch, "%d", out->limit + 1);
  g_snprintf (out->skip, sizeof out->skip, "%d", out->offset);
  return GRPC_STATUS_OK;
}

/* Fills `out` from the limit + 1 rows of a page query (none: NULL). */
static void
page_from_rows (gn_arena *arena, PGresult *res, const page_request *page,
                Generia__Post__V1__PostPage *out)
{
  int rows = res != NULL ? PQntuples (res) : 0;
  int n = MIN (rows, page->limit);
  out->has_more = rows > page->limit;
  out->posts = gn_arena_alloc (arena, sizeof *out->posts * (size_t)MAX (n, 1));
  for (int i = 0; i < n; i++)
    out->posts[i] = post_from_row (arena, res, i);
  out->n_posts = (size_t)n;
  if (out->has_more) {
    gn_cursor last = { .created_at_us = out->posts[n - 1]->created_at_us };
    g_strlcpy (last.id, out->posts[n - 1]->id, sizeof last.id);
    char *cursor = gn_arena_alloc (arena, GN_CURSOR_MAX_CHARS + 1);
    if (gn_cursor_encode (&last, cursor, GN_CURSOR_MAX_CHARS + 1))
      out->next_cursor = cursor;
    else
      gn_error ("post %s has a creation time no cursor can name", last.id);
  }
}

static Generia__Post__V1__PostPage *
page_new (gn_arena *arena)
{
  Generia__Post__V1__PostPage *page = gn_arena_alloc (arena, sizeof *page);
  generia__post__v1__post_page__init (page);
  return page;
}

/* --- calls to the media service -------------------------------------------------------- */

/* Turns a failed media call into this call's answer (see the top comment). */
static grpc_status_code
media_refusal (gn_rpc_call *call, const char *method, const gn_rpc_status *status)
{
  const char *message = status->message[0] != '\0' ? status->message : "media refused";
  switch (status->code) {
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_INVALID_ARGUMENT:
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_media", "%s", message);
    case GRPC_STATUS_PERMISSION_DENIED:
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "media_not_yours", "%s",
                               message);
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_UNIMPLEMENTED:
      gn_warn ("MediaService.%s: %s %s", method, gn_rpc_status_name (status->code),
               status->message);
      return gn_rpc_call_fail (call, GRPC_STATUS_UNAVAILABLE, "media_unavailable",
                               "the media service is unavailable");
    case GRPC_STATUS_DEADLINE_EXCEEDED:
      return gn_rpc_call_fail (call, GRPC_STATUS_DEADLINE_EXCEEDED, "timeout",
                               "the media service did not answer in time");
    default:
      gn_error ("MediaService.%s: %s %s", method, gn_rpc_status_name (status->code),
                status->message);
      return gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
  }
}

static grpc_status_code
call_media (gn_rpc_call *call, const char *method, const ProtobufCMessage *request,
            gn_rpc_status *status)
{
  ProtobufCMessage *response = NULL;
  gn_rpc_call_options options = { .parent = call };
  return gn_rpc_unary (gn_rpc_client_get (state_of (call)->media_address),
                       &generia__media__v1__media_service__descriptor, method, request, &response,
                       gn_rpc_call_arena (call), &options, status);
}

/* --- the media deletion outbox ------------------------------------------------------- */

static void
outbox_done (PGconn *conn, const char *post_id)
{
  g_autoptr (GError) error = NULL;
  const char *params[] = { post_id };
  if (!gn_pg_command (conn, &error, "DELETE FROM post.media_deletions WHERE post_id = $1", 1,
                      params))
    gn_warn ("media of post %s deleted, but its outbox row stays (retried harmlessly): %s", post_id,
             error->message);
}

/* Claims due rows (pushing their next attempt out: the retry interval, doubling, at most an
 * hour) and asks the media service again for each, as its author. */
static int
retry_media_deletions (post_state *state, GError **error)
{
  PGconn *conn = gn_pg_thread_conn (state->database_url, error);
  if (conn == NULL)
    return -1;
  char interval[16];
  g_snprintf (interval, sizeof interval, "%d", state->retry_interval_s);
  const char *params[] = { interval };
  PGresult *res = gn_pg_exec (
      conn, error,
      "UPDATE post.media_deletions SET attempts = attempts + 1,"
      " next_attempt_at = now()"
      "   + make_interval(secs => least(3600, $1::int * 2 ^ least(attempts, 7)))"
      " WHERE post_id IN (SELECT post_id FROM post.media_deletions WHERE next_attempt_at <= now()"
      "                   ORDER BY next_attempt_at LIMIT 50 FOR UPDATE SKIP LOCKED)"
      " RETURNING post_id, user_id, media_ids",
      1, params);
  if (res == NULL)
    return -1;
  int done = 0;
  for (int i = 0; i < PQntuples (res); i++) {
    const char *post_id = PQgetvalue (res, i, 0);
    g_autofree char *token
        = gn_token_sign (state->token_key, PQgetvalue (res, i, 1), 60, g_get_real_time (), NULL);
    g_autofree char *authorization = g_strconcat ("Bearer ", token, NULL);
    g_autofree char *request_id = g_uuid_string_random ();
    gn_arena *arena = gn_arena_new ();
    Generia__Media__V1__DeleteMediaRequest req = GENERIA__MEDIA__V1__DELETE_MEDIA_REQUEST__INIT;
    req.media_ids = split_words (arena, PQgetvalue (res, i, 2), &req.n_media_ids);
    gn_rpc_call_options options = { .request_id = request_id, .authorization = authorization };
    gn_rpc_status status;
    ProtobufCMessage *response = NULL;
    if (gn_rpc_unary (gn_rpc_client_get (state->media_address),
                      &generia__media__v1__media_service__descriptor, "DeleteMedia", &req.base,
                      &response, arena, &options, &status)
        == GRPC_STATUS_OK) {
      outbox_done (conn, post_id);
      done++;
    } else {
      gn_warn ("deleting the media of deleted post %s failed again (%s: %s); retried later",
               post_id, gn_rpc_status_name (status.code), status.message);
    }
    gn_arena_free (arena);
  }
  PQclear (res);
  return done;
}

/* --- handlers -------------------------------------------------------------------------- */

/* Step 1 of CreatePost: the post, its media, hashtags and mentions in state "pending". */
static grpc_status_code
insert_pending (gn_rpc_call *call, PGconn *conn, const char *caption, const char *joined_ids,
                char **post_id)
{
  g_autoptr (GError) error = NULL;
  caption_tags tags = { 0 };
  caption_tags_parse (caption, &tags);
  const char *params[]
      = { gn_rpc_call_user_id (call), caption, joined_ids, tags.hashtags, tags.mentions };
  PGresult *res = NULL;
  if (gn_service_begin (call, conn, &error)) {
    res = gn_pg_exec (
        conn, &error,
        "WITH new_post AS ("
        "  INSERT INTO post.posts (user_id, caption, state)"
        "  VALUES ($1, $2, 'pending') RETURNING id),"
        " media AS ("
        "  INSERT INTO post.post_media (post_id, position, media_id)"
        "  SELECT new_post.id, (m.n - 1)::smallint, m.id::uuid"
        "  FROM new_post, unnest(string_to_array($3, ' ')) WITH ORDINALITY m(id, n)),"
        " tags AS ("
        "  INSERT INTO post.hashtags (post_id, tag, position)"
        "  SELECT new_post.id, t.tag, (t.n - 1)::smallint"
        "  FROM new_post, unnest(string_to_array($4, ' ')) WITH ORDINALITY t(tag, n)),"
        " names AS ("
        "  INSERT INTO post.mentions (post_id, username, position)"
        "  SELECT new_post.id, u.name, (u.n - 1)::smallint"
        "  FROM new_post, unnest(string_to_array($5, ' ')) WITH ORDINALITY u(name, n))"
        " SELECT id FROM new_post",
        5, params);
    if (res == NULL)
      gn_service_rollback (conn);
  }
  caption_tags_clear (&tags);
  if (res == NULL) {
    if (g_error_matches (error, GN_PG_ERROR, GN_PG_ERROR_UNIQUE))
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_media",
                               "a photo or video of this post belongs to another post");
    return gn_service_fail_internal (call, error);
  }
  *post_id = gn_arena_strdup (gn_rpc_call_arena (call), PQgetvalue (res, 0, 0));
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    return gn_service_fail_internal (call, error);
  return GRPC_STATUS_OK;
}

/* Publishes a pending post, stamped now (see the top comment).  Returns 1 and sets
 * *created_at_us (also when healing published it first), 0 if the post is gone, -1 on error. */
static int
publish (PGconn *conn, const char *post_id, int64_t *created_at_us, GError **error)
{
  const char *params[] = { post_id };
  PGresult *res = gn_pg_exec (conn, error,
                              "UPDATE post.posts SET state = 'published',"
                              " created_at = stamp.now, updated_at = stamp.now"
                              " FROM (SELECT clock_timestamp() AS now) stamp"
                              " WHERE id = $1 AND state = 'pending'"
                              " RETURNING (extract(epoch FROM created_at) * 1000000)::int8",
                              1, params);
  if (res != NULL && PQntuples (res) == 0) {
    PQclear (res);
    res = gn_pg_exec (conn, error,
                      "SELECT (extract(epoch FROM created_at) * 1000000)::int8 FROM post.posts"
                      " WHERE id = $1 AND state = 'published'",
                      1, params);
  }
  if (res == NULL)
    return -1;
  int found = PQntuples (res);
  if (found > 0)
    *created_at_us = g_ascii_strtoll (PQgetvalue (res, 0, 0), NULL, 10);
  PQclear (res);
  return found;
}

/* Claims a pending post for undoing: state "abandoned", which nothing publishes, so neither
 * CreatePost nor healing can publish a post whose media are being released.  Returns 1 if
 * claimed now or before, 0 if it was published (or is gone), -1 on error. */
static int
claim_abandoned (PGconn *conn, const char *post_id, GError **error)
{
  const char *params[] = { post_id };
  PGresult *res = gn_pg_exec (conn, error,
                              "UPDATE post.posts SET state = 'abandoned'"
                              " WHERE id = $1 AND state IN ('pending', 'abandoned') RETURNING id",
                              1, params);
  if (res == NULL)
    return -1;
  int claimed = PQntuples (res);
  PQclear (res);
  return claimed;
}

/* Removes an abandoned post once its media are released. */
static gboolean
delete_abandoned (PGconn *conn, const char *post_id, GError **error)
{
  const char *params[] = { post_id };
  return gn_pg_command (conn, error, "DELETE FROM post.posts WHERE id = $1 AND state = 'abandoned'",
                        1, params);
}

/* MediaService.DetachMedia for post_id as the user whose "Bearer ..." authorization is given,
 * on a timeout of its own (the undo must not die with the deadline that failed the post). */
static gboolean
detach_media (post_state *state, const char *post_id, const char *authorization,
              const char *request_id, gn_rpc_status *status)
{
  gn_arena *arena = gn_arena_new ();
  Generia__Media__V1__DetachMediaRequest req = GENERIA__MEDIA__V1__DETACH_MEDIA_REQUEST__INIT;
  req.post_id = (char *)post_id;
  gn_rpc_call_options options
      = { .request_id = request_id, .authorization = authorization, .timeout_ms = 5000 };
  ProtobufCMessage *response = NULL;
  gboolean ok = gn_rpc_unary (gn_rpc_client_get (state->media_address),
                              &generia__media__v1__media_service__descriptor, "DetachMedia",
                              &req.base, &response, arena, &options, status)
                == GRPC_STATUS_OK;
  gn_arena_free (arena);
  return ok;
}

/* Undoes CreatePost after step 2 (see the top comment): claims the post, releases the media
 * if they may have been attached, then deletes the post.  A post that healing published in the
 * meantime stays published.  What fails here is left to healing. */
static void
abandon_post (gn_rpc_call *call, PGconn *conn, const char *post_id, gboolean maybe_attached)
{
  g_autoptr (GError) error = NULL;
  gn_rpc_status status;
  int claimed = claim_abandoned (conn, post_id, &error);
  if (claimed <= 0) {
    if (claimed < 0)
      gn_warn ("post %s not published; abandoning it failed (healing settles it): %s", post_id,
               error->message);
    return;
  }
  if (maybe_attached
      && !detach_media (state_of (call), post_id, gn_rpc_call_authorization (call),
                        gn_rpc_call_request_id (call), &status)) {
    gn_warn ("post %s not published; releasing its media failed (%s: %s), healing settles it",
             post_id, gn_rpc_status_name (status.code), status.message);
    return;
  }
  if (!delete_abandoned (conn, post_id, &error))
    gn_warn ("post %s not published; deleting it failed (healing settles it): %s", post_id,
             error->message);
}

static grpc_status_code
handle_create_post (gn_rpc_call *call, const ProtobufCMessage *message, ProtobufCMessage **response)
{
  const Generia__Post__V1__CreatePostRequest *req = (const void *)message;
  post_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  if ((code = check_caption (call, req->caption)) != GRPC_STATUS_OK)
    return code;
  char *ids[MAX_MEDIA_PER_POST];
  char *joined_ids = NULL;
  if ((code = check_media_ids (call, req->media_ids, req->n_media_ids, ids, &joined_ids))
      != GRPC_STATUS_OK)
    return code;
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  Generia__Post__V1__CreatePostResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__post__v1__create_post_response__init (out);
  if ((code = insert_pending (call, conn, req->caption, joined_ids, &out->post_id))
      != GRPC_STATUS_OK)
    return code;
  if (GN_FAILPOINT ("post.create.before_attach"))
    return gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "fail point");

  Generia__Media__V1__AttachMediaRequest attach = GENERIA__MEDIA__V1__ATTACH_MEDIA_REQUEST__INIT;
  attach.post_id = out->post_id;
  attach.media_ids = ids;
  attach.n_media_ids = req->n_media_ids;
  /* Half the grace at most, so healing never meets an attach still in flight. */
  gn_rpc_call_options options
      = { .parent = call, .timeout_ms = MIN (5000, state->pending_grace_s * 1000 / 2) };
  ProtobufCMessage *attached = NULL;
  gn_rpc_status status;
  if (gn_rpc_unary (gn_rpc_client_get (state->media_address),
                    &generia__media__v1__media_service__descriptor, "AttachMedia", &attach.base,
                    &attached, arena, &options, &status)
      != GRPC_STATUS_OK) {
    switch (status.code) {
      case GRPC_STATUS_FAILED_PRECONDITION:
      case GRPC_STATUS_NOT_FOUND:
      case GRPC_STATUS_INVALID_ARGUMENT:
      case GRPC_STATUS_PERMISSION_DENIED:
        abandon_post (call, conn, out->post_id, FALSE); /* refused: nothing attached */
        break;
      case GRPC_STATUS_DEADLINE_EXCEEDED:
        abandon_post (call, conn, out->post_id, TRUE); /* over: no attach can commit now */
        break;
      default:
        gn_warn ("post %s stays pending: AttachMedia %s (healing settles it)", out->post_id,
                 gn_rpc_status_name (status.code));
        break;
    }
    return media_refusal (call, "AttachMedia", &status);
  }

  int published = -1;
  if (!GN_FAILPOINT ("post.create.after_attach") && gn_service_begin (call, conn, &error)) {
    published = publish (conn, out->post_id, &out->created_at_us, &error);
    if (published < 0 || !gn_service_commit (call, conn, &error)) {
      gn_service_rollback (conn);
      published = -1;
    }
  }
  if (published <= 0) {
    abandon_post (call, conn, out->post_id, TRUE);
    if (published == 0 || error == NULL)
      return gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
    return gn_service_fail_internal (call, error);
  }
  gn_info ("post %s created by %s with %zu media", out->post_id, gn_rpc_call_user_id (call),
           req->n_media_ids);
  *response = &out->base;
  return GRPC_STATUS_OK;
}

/* --- healing of pending posts ---------------------------------------------------------- */

/* Releases the media of an abandoned post, then deletes it.  FALSE: tried again later. */
static gboolean
finish_abandoned (post_state *state, PGconn *conn, const char *post_id, const char *authorization,
                  const char *request_id)
{
  g_autoptr (GError) error = NULL;
  gn_rpc_status status;
  if (!detach_media (state, post_id, authorization, request_id, &status)) {
    gn_warn ("abandoned post %s: DetachMedia failed (%s: %s); tried again later", post_id,
             gn_rpc_status_name (status.code), status.message);
    return FALSE;
  }
  if (!delete_abandoned (conn, post_id, &error)) {
    gn_warn ("abandoned post %s: deleting failed: %s", post_id, error->message);
    return FALSE;
  }
  return TRUE;
}

/* Settles one pending or abandoned post past the grace as its author (see Healing in the top
 * comment): 1 published, 0 removed, -1 not settled this time. */
static int
settle_post (post_state *state, PGconn *conn, const char *post_id, const char *user_id,
             const char *post_state_name, const char *media_ids)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = gn_token_sign (state->token_key, user_id, 60, g_get_real_time (), NULL);
  g_autofree char *authorization = g_strconcat ("Bearer ", token, NULL);
  g_autofree char *request_id = g_uuid_string_random ();
  gn_arena *arena = gn_arena_new ();
  int settled = -1;
  size_t wanted = 0, present = 0;

  if (strcmp (post_state_name, "pending") == 0) {
    Generia__Media__V1__GetAttachedMediaRequest req
        = GENERIA__MEDIA__V1__GET_ATTACHED_MEDIA_REQUEST__INIT;
    req.post_id = (char *)post_id;
    gn_rpc_call_options options = { .request_id = request_id, .authorization = authorization };
    gn_rpc_status status;
    ProtobufCMessage *response = NULL;
    if (gn_rpc_unary (gn_rpc_client_get (state->media_address),
                      &generia__media__v1__media_service__descriptor, "GetAttachedMedia", &req.base,
                      &response, arena, &options, &status)
        != GRPC_STATUS_OK) {
      gn_warn ("pending post %s: GetAttachedMedia failed (%s: %s); tried again later", post_id,
               gn_rpc_status_name (status.code), status.message);
      goto out;
    }
    const Generia__Media__V1__GetAttachedMediaResponse *found = (const void *)response;
    char **ids = split_words (arena, media_ids, &wanted);
    for (size_t i = 0; i < wanted; i++)
      for (size_t j = 0; j < found->n_media_ids; j++)
        if (g_ascii_strcasecmp (ids[i], found->media_ids[j]) == 0) {
          present++;
          break;
        }
    if (wanted > 0 && present == wanted) {
      int64_t created_at_us = 0;
      if (publish (conn, post_id, &created_at_us, &error) < 0) {
        gn_warn ("pending post %s: publishing failed: %s", post_id, error->message);
        goto out;
      }
      gn_info ("healing: published post %s, whose media were all attached", post_id);
      settled = 1;
      goto out;
    }
    int claimed = claim_abandoned (conn, post_id, &error);
    if (claimed <= 0) {
      if (claimed < 0)
        gn_warn ("pending post %s: abandoning failed: %s", post_id, error->message);
      goto out; /* published by its CreatePost meanwhile: nothing to undo */
    }
  }
  if (!finish_abandoned (state, conn, post_id, authorization, request_id))
    goto out;
  gn_info ("healing: removed unpublished post %s (%zu of its %zu media were attached)", post_id,
           present, wanted);
  settled = 0;
out:
  gn_arena_free (arena);
  return settled;
}

/* Settles the pending and abandoned posts older than the grace, oldest first, 50 per round. */
static int
heal_pending_posts (post_state *state, GError **error)
{
  PGconn *conn = gn_pg_thread_conn (state->database_url, error);
  if (conn == NULL)
    return -1;
  char grace[16];
  g_snprintf (grace, sizeof grace, "%d", state->pending_grace_s);
  const char *params[] = { grace };
  PGresult *res
      = gn_pg_exec (conn, error,
                    "SELECT p.id, p.user_id, p.state,"
                    " (SELECT coalesce(string_agg(m.media_id::text, ' '), '')"
                    "  FROM post.post_media m WHERE m.post_id = p.id)"
                    " FROM post.posts p WHERE p.state <> 'published'"
                    " AND p.created_at < clock_timestamp() - make_interval(secs => $1::int)"
                    " ORDER BY p.created_at LIMIT 50",
                    1, params);
  if (res == NULL)
    return -1;
  int settled = 0;
  for (int i = 0; i < PQntuples (res); i++)
    if (settle_post (state, conn, PQgetvalue (res, i, 0), PQgetvalue (res, i, 1),
                     PQgetvalue (res, i, 2), PQgetvalue (res, i, 3))
        >= 0)
      settled++;
  PQclear (res);
  return settled;
}

static void
retry (void *data)
{
  g_autoptr (GError) error = NULL;
  int done = retry_media_deletions (data, &error);
  if (done < 0)
    gn_warn ("retrying media deletions failed: %s", error->message);
  else if (done > 0)
    gn_info ("deleted the media of %d deleted posts on retry", done);
  g_clear_error (&error);
  int settled = heal_pending_posts (data, &error);
  if (settled < 0)
    gn_warn ("healing unpublished posts failed: %s", error->message);
  else if (settled > 0)
    gn_info ("healing settled %d unpublished posts", settled);
}

static grpc_status_code
handle_get_post (gn_rpc_call *call, const ProtobufCMessage *message, ProtobufCMessage **response)
{
  const Generia__Post__V1__GetPostRequest *req = (const void *)message;
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  if (!is_uuid (req->post_id))
    return post_not_found (call);
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  const char *params[] = { req->post_id };
  PGresult *res = gn_pg_exec (
      conn, &error, "SELECT " POST_COLUMNS " FROM post.posts p WHERE p.id = $1 AND " PUBLISHED, 1,
      params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  if (PQntuples (res) == 0) {
    PQclear (res);
    return post_not_found (call);
  }
  Generia__Post__V1__Post *post = post_from_row (gn_rpc_call_arena (call), res, 0);
  PQclear (res);
  *response = &post->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_posts_by_ids (gn_rpc_call *call, const ProtobufCMessage *message,
                         ProtobufCMessage **response)
{
  const Generia__Post__V1__GetPostsByIdsRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  if (req->n_post_ids > MAX_IDS_PER_BATCH)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "too_many_ids",
                             "at most %d ids per call", MAX_IDS_PER_BATCH);
  Generia__Post__V1__GetPostsByIdsResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__post__v1__get_posts_by_ids_response__init (out);
  *response = &out->base;

  /* Malformed ids cannot name a post: they are left out like unknown ones. */
  GString *asked = g_string_new (NULL);
  for (size_t i = 0; i < req->n_post_ids; i++)
    if (is_uuid (req->post_ids[i]))
      g_string_append_printf (asked, "%s%s", asked->len > 0 ? " " : "", req->post_ids[i]);
  if (asked->len == 0) {
    g_string_free (asked, TRUE);
    return GRPC_STATUS_OK;
  }

  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL) {
    g_string_free (asked, TRUE);
    return code;
  }
  const char *params[] = { asked->str };
  PGresult *res
      = gn_pg_exec (conn, &error,
                    "SELECT " POST_COLUMNS " FROM unnest(string_to_array($1, ' ')::uuid[])"
                    "   WITH ORDINALITY asked(id, n)"
                    " JOIN post.posts p ON p.id = asked.id AND " PUBLISHED " ORDER BY asked.n",
                    1, params);
  g_string_free (asked, TRUE);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  int rows = PQntuples (res);
  out->posts = gn_arena_alloc (arena, sizeof *out->posts * (size_t)MAX (rows, 1));
  for (int i = 0; i < rows; i++)
    out->posts[i] = post_from_row (arena, res, i);
  out->n_posts = (size_t)rows;
  PQclear (res);
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_user_posts (gn_rpc_call *call, const ProtobufCMessage *message,
                       ProtobufCMessage **response)
{
  const Generia__Post__V1__GetUserPostsRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;
  page_request page;

  if (!is_uuid (req->user_id))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_user_id",
                             "user_id must be a UUID");
  if ((code = parse_page (call, req->page, &page)) != GRPC_STATUS_OK)
    return code;
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  PGresult *res = NULL;
  if (page.has_cursor) {
    const char *params[] = { req->user_id, page.after_time, page.after.id, page.fetch };
    res = gn_pg_exec (conn, &error,
                      "SELECT " POST_COLUMNS " FROM post.posts p"
                      " WHERE p.user_id = $1 AND " PUBLISHED
                      " AND (p.created_at, p.id) < ($2::timestamptz, $3::uuid)" FEED_ORDER
                      " LIMIT $4",
                      4, params);
  } else if (!page.beyond) {
    const char *params[] = { req->user_id, page.fetch, page.skip };
    res = gn_pg_exec (conn, &error,
                      "SELECT " POST_COLUMNS " FROM post.posts p"
                      " WHERE p.user_id = $1 AND " PUBLISHED FEED_ORDER " LIMIT $2 OFFSET $3",
                      3, params);
  }
  if (res == NULL && !page.beyond)
    return gn_service_fail_internal (call, error);
  Generia__Post__V1__PostPage *out = page_new (arena);
  page_from_rows (arena, res, &page, out);
  PQclear (res);

  const char *count_params[] = { req->user_id };
  res = gn_pg_exec (conn, &error,
                    "SELECT count(*) FROM post.posts p WHERE p.user_id = $1 AND " PUBLISHED, 1,
                    count_params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  out->total = g_ascii_strtoll (PQgetvalue (res, 0, 0), NULL, 10);
  PQclear (res);
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_global_feed (gn_rpc_call *call, const ProtobufCMessage *message,
                        ProtobufCMessage **response)
{
  const Generia__Post__V1__GetGlobalFeedRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;
  page_request page;

  if ((code = parse_page (call, req->page, &page)) != GRPC_STATUS_OK)
    return code;
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  PGresult *res = NULL;
  if (page.has_cursor) {
    const char *params[] = { page.after_time, page.after.id, page.fetch };
    res = gn_pg_exec (conn, &error,
                      "SELECT " POST_COLUMNS " FROM post.posts p"
                      " WHERE " PUBLISHED
                      " AND (p.created_at, p.id) < ($1::timestamptz, $2::uuid)" FEED_ORDER
                      " LIMIT $3",
                      3, params);
  } else if (!page.beyond) {
    const char *params[] = { page.fetch, page.skip };
    res = gn_pg_exec (conn, &error,
                      "SELECT " POST_COLUMNS " FROM post.posts p WHERE " PUBLISHED FEED_ORDER
                      " LIMIT $1 OFFSET $2",
                      2, params);
  }
  if (res == NULL && !page.beyond)
    return gn_service_fail_internal (call, error);
  /* total stays 0: counting every post per page would cost a full scan; has_more suffices. */
  Generia__Post__V1__PostPage *out = page_new (arena);
  page_from_rows (arena, res, &page, out);
  PQclear (res);
  *response = &out->base;
  return GRPC_STATUS_OK;
}

/* Inside a transaction: locks the post's row and checks that the caller wrote it.  Fills
 * *media_ids (arena, space-joined) when asked.  On failure the answer is set and the
 * transaction is still open. */
static grpc_status_code
lock_own_post (gn_rpc_call *call, PGconn *conn, const char *post_id, char **media_ids,
               GError **error)
{
  const char *params[] = { post_id };
  PGresult *res = gn_pg_exec (conn, error,
                              "SELECT p.user_id,"
                              " (SELECT coalesce(string_agg(m.media_id::text, ' '"
                              "                             ORDER BY m.position), '')"
                              "  FROM post.post_media m WHERE m.post_id = p.id)"
                              " FROM post.posts p WHERE p.id = $1 AND " PUBLISHED " FOR UPDATE",
                              1, params);
  if (res == NULL)
    return gn_service_fail_internal (call, *error);
  if (PQntuples (res) == 0) {
    PQclear (res);
    return post_not_found (call);
  }
  gboolean own = g_ascii_strcasecmp (PQgetvalue (res, 0, 0), gn_rpc_call_user_id (call)) == 0;
  if (own && media_ids != NULL)
    *media_ids = gn_arena_strdup (gn_rpc_call_arena (call), PQgetvalue (res, 0, 1));
  PQclear (res);
  if (!own)
    return gn_rpc_call_fail (call, GRPC_STATUS_PERMISSION_DENIED, "not_your_post",
                             "only the author can change or delete this post");
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_delete_post (gn_rpc_call *call, const ProtobufCMessage *message, ProtobufCMessage **response)
{
  const Generia__Post__V1__DeletePostRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  if (!is_uuid (req->post_id))
    return post_not_found (call);
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  char *media_ids = NULL;
  if ((code = lock_own_post (call, conn, req->post_id, &media_ids, &error)) != GRPC_STATUS_OK) {
    gn_service_rollback (conn);
    return code;
  }
  const char *params[] = { req->post_id };
  const char *outbox_params[] = { req->post_id, gn_rpc_call_user_id (call), media_ids };
  if (!gn_pg_command (conn, &error, "DELETE FROM post.posts WHERE id = $1", 1, params)
      || (media_ids[0] != '\0'
          && !gn_pg_command (conn, &error,
                             "INSERT INTO post.media_deletions (post_id, user_id, media_ids)"
                             " VALUES ($1, $2, $3)",
                             3, outbox_params))
      || !gn_service_commit (call, conn, &error)) {
    gn_service_rollback (conn);
    return gn_service_fail_internal (call, error);
  }
  gn_info ("post %s deleted by its author", req->post_id);

  Generia__Media__V1__DeleteMediaRequest remove = GENERIA__MEDIA__V1__DELETE_MEDIA_REQUEST__INIT;
  remove.media_ids = split_words (arena, media_ids, &remove.n_media_ids);
  gn_rpc_status status;
  if (remove.n_media_ids > 0) {
    if (call_media (call, "DeleteMedia", &remove.base, &status) == GRPC_STATUS_OK)
      outbox_done (conn, req->post_id);
    else
      gn_warn ("post %s deleted, but MediaService.DeleteMedia failed (%s: %s); deleting its"
               " media is retried later: %s",
               req->post_id, gn_rpc_status_name (status.code), status.message, media_ids);
  }

  Generia__Post__V1__DeletePostResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__post__v1__delete_post_response__init (out);
  out->deleted = TRUE;
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_edit_caption (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  const Generia__Post__V1__EditCaptionRequest *req = (const void *)message;
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;
  caption_tags tags = { 0 };

  GN_RPC_REQUIRE_USER (call);
  if (!is_uuid (req->post_id))
    return post_not_found (call);
  if ((code = check_caption (call, req->caption)) != GRPC_STATUS_OK)
    return code;
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  if ((code = lock_own_post (call, conn, req->post_id, NULL, &error)) != GRPC_STATUS_OK) {
    gn_service_rollback (conn);
    return code;
  }

  /* The old hashtags and mentions go first, in their own statement: a data-modifying WITH
   * cannot delete and re-insert the same primary key in one statement. */
  caption_tags_parse (req->caption, &tags);
  const char *edit_params[] = { req->post_id, req->caption };
  if (!gn_pg_command (conn, &error,
                      "WITH old_tags AS (DELETE FROM post.hashtags WHERE post_id = $1),"
                      " old_names AS (DELETE FROM post.mentions WHERE post_id = $1)"
                      " UPDATE post.posts SET caption = $2, updated_at = clock_timestamp()"
                      " WHERE id = $1",
                      2, edit_params))
    goto fail;
  const char *tag_params[] = { req->post_id, tags.hashtags, tags.mentions };
  if (!gn_pg_command (conn, &error,
                      "WITH tags AS ("
                      "  INSERT INTO post.hashtags (post_id, tag, position)"
                      "  SELECT $1::uuid, t.tag, (t.n - 1)::smallint"
                      "  FROM unnest(string_to_array($2, ' ')) WITH ORDINALITY t(tag, n))"
                      " INSERT INTO post.mentions (post_id, username, position)"
                      " SELECT $1::uuid, u.name, (u.n - 1)::smallint"
                      " FROM unnest(string_to_array($3, ' ')) WITH ORDINALITY u(name, n)",
                      3, tag_params))
    goto fail;
  const char *post_params[] = { req->post_id };
  PGresult *res = gn_pg_exec (
      conn, &error, "SELECT " POST_COLUMNS " FROM post.posts p WHERE p.id = $1", 1, post_params);
  if (res == NULL)
    goto fail;
  Generia__Post__V1__Post *post = post_from_row (gn_rpc_call_arena (call), res, 0);
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    goto fail;
  caption_tags_clear (&tags);
  *response = &post->base;
  return GRPC_STATUS_OK;

fail:
  gn_service_rollback (conn);
  caption_tags_clear (&tags);
  return gn_service_fail_internal (call, error);
}

static grpc_status_code
handle_health_check (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  return gn_service_health (call, "post", state_of (call)->database_url, NULL, NULL, response);
}

static const gn_rpc_method post_methods[] = {
  { "CreatePost", handle_create_post, GN_RPC_BLOCKING },
  { "GetPost", handle_get_post, GN_RPC_BLOCKING },
  { "GetUserPosts", handle_get_user_posts, GN_RPC_BLOCKING },
  { "GetPostsByIds", handle_get_posts_by_ids, GN_RPC_BLOCKING },
  { "GetGlobalFeed", handle_get_global_feed, GN_RPC_BLOCKING },
  { "DeletePost", handle_delete_post, GN_RPC_BLOCKING },
  { "EditCaption", handle_edit_caption, GN_RPC_BLOCKING },
  { "HealthCheck", handle_health_check, GN_RPC_BLOCKING },
  { NULL, NULL, 0 },
};

static gboolean
post_migrate (const gn_service_env *env, GError **error)
{
  return gn_service_migrate (env, "post", error);
}

static gboolean
post_init (const gn_service_env *env, gn_rpc_service *service, GError **error)
{
  post_state *state = g_new0 (post_state, 1);
  state->database_url = g_strdup (env->database_url);
  state->media_address = g_strdup (env->config->service_address[GN_SERVICE_MEDIA]);
  state->token_key = env->token_key;
  state->retry_interval_s = env->config->media_sweep_interval_s;
  state->pending_grace_s = env->config->post_pending_grace_s;
  state->retrier = gn_periodic_start ("post-outbox", "post", state->retry_interval_s, retry, state);
  service->descriptor = &generia__post__v1__post_service__descriptor;
  service->methods = post_methods;
  service->log_name = "post";
  service->data = state;
  return TRUE;
}

static void
post_fini (gn_rpc_service *service)
{
  post_state *state = service->data;
  if (state == NULL)
    return;
  gn_periodic_stop (state->retrier);
  g_free (state->database_url);
  g_free (state->media_address);
  g_free (state);
  service->data = NULL;
}

const gn_service_module gn_post_module = {
  .id = GN_SERVICE_POST,
  .migrate = post_migrate,
  .init = post_init,
  .fini = post_fini,
};
