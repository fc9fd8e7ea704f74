/* media.c - the media service: uploads, variants, storage, and the rows that describe them.
 *
 * Three ways in, one path inside.  The gateway turns a presigned PUT, a multipart upload and a
 * base64 JSON upload alike into one client-streaming Upload call (an UploadStart, then the
 * bytes in chunks), so this service is the only place that decides what an upload is.
 *
 *   Upload:  start -> (presigned: check the URL's signature and expiry, claim the pending row)
 *            -> bytes into a spool file (never into memory; the size limit is enforced while
 *            reading) -> type from the bytes (process.c) -> variants into a temporary folder
 *            -> rows (state "storing") -> objects put into storage -> state "confirmed" (direct)
 *            or "uploaded" (presigned, waiting for ConfirmUpload).
 *
 * Rows and stored files never disagree for long.  The variant rows, whose keys name the
 * objects, are committed before any object is put, in a state that expires; a failure removes
 * the objects already put and then the rows, and if the process dies in between, the sweep
 * finds the expired row and removes its objects and itself.  Deleting goes the same way round:
 * the row turns "deleting" (invisible), the objects go, then the row.  Unconfirmed presigned
 * uploads are swept once their URL has expired.
 *
 * Storage keys are "media/<media id>/<variant>-<sha256 of the bytes>.<ext>": immutable names,
 * so the CDN can tell browsers to cache them forever.
 *
 * Upload URLs are signed with the media key (HMAC-SHA256 over "upload\n<id>\n<expires>\n<size>",
 * checked in constant time), so the PUT needs no bearer token, as API v1's web client expects.
 * CheckUploadURL lets the gateway refuse a bad URL, or a body larger than the signed size,
 * before it reads the body; Upload checks the same again, since it alone owns the decision.
 *
 * Authorisation is decided here, by the owner of the data: only the uploader confirms,
 * attaches or deletes a media item; other people see confirmed media only. */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <gio/gio.h>
#include <sodium.h>

#include "cdn.pb-c.h"
#include "log.h"
#include "media.pb-c.h"
#include "pg.h"
#include "process.h"
#include "storage.h"

#define MAX_BATCH 500
#define MAX_FILENAME 255
/* Rows in flight (receiving, storing) get this long before the sweep may take them. */
#define IN_FLIGHT_GRACE_S 3600

typedef struct {
  char *database_url;
  char *cdn_address;
  char *spool_dir;
  gn_storage *storage;
  gn_token_key upload_key;
  gn_media_limits limits;
  size_t max_upload_bytes;
  int upload_url_ttl_s;

  gn_periodic *sweeper;
} media_state;

static media_state *
state_of (gn_rpc_call *call)
{
  return gn_rpc_call_service_data (call);
}

static PGconn *
conn_or_fail (gn_rpc_call *call, grpc_status_code *code)
{
  return gn_service_db (call, state_of (call)->database_url, code);
}

/* A PostgreSQL array literal of the well-formed UUIDs among ids, or NULL if there are none. */
static char *
uuid_array (gn_arena *arena, char **ids, size_t n)
{
  GString *array = g_string_new ("{");
  for (size_t i = 0; i < n; i++)
    if (g_uuid_string_is_valid (ids[i]))
      g_string_append_printf (array, "%s%s", array->len > 1 ? "," : "", ids[i]);
  g_string_append_c (array, '}');
  char *out = array->len > 2 ? gn_arena_strdup (arena, array->str) : NULL;
  g_string_free (array, TRUE);
  return out;
}

/* --- upload URL signatures ------------------------------------------------------------ */

/* The MAC covers the id, the expiry and the size the upload was declared with, so a URL
 * admits no more bytes than its owner asked for, and the gateway can refuse a larger body
 * before reading it. */
static void
upload_signature (const gn_token_key *key, const char *media_id, int64_t expires, int64_t size,
                  char out[crypto_auth_hmacsha256_BYTES * 2])
{
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  char message[128];
  int len
      = g_snprintf (message, sizeof message, "upload\n%s\n%" G_GINT64_FORMAT "\n%" G_GINT64_FORMAT,
                    media_id, expires, size);
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init (&state, key->secret, sizeof key->secret);
  crypto_auth_hmacsha256_update (&state, (const unsigned char *)message, (size_t)len);
  crypto_auth_hmacsha256_final (&state, mac);
  sodium_bin2base64 (out, crypto_auth_hmacsha256_BYTES * 2, mac, sizeof mac,
                     sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Signature, then expiry, of an upload URL's parts.  Only UUIDs are ever signed, which also
 * keeps the signed text within its buffer. */
static grpc_status_code
check_upload_url (gn_rpc_call *call, const char *media_id, int64_t expires, int64_t size,
                  const char *signature)
{
  media_state *state = state_of (call);
  char expected[crypto_auth_hmacsha256_BYTES * 2];
  gboolean valid = FALSE;

  if (g_uuid_string_is_valid (media_id) && size > 0) {
    upload_signature (&state->upload_key, media_id, expires, size, expected);
    size_t len = strlen (expected);
    /* strnlen: a signature from outside is read no further than one could be long. */
    valid = strnlen (signature, len + 1) == len && sodium_memcmp (expected, signature, len) == 0;
  }
  if (!valid)
    return gn_rpc_call_fail (call, GRPC_STATUS_PERMISSION_DENIED, "invalid_signature",
                             "the upload URL's signature is not valid");
  if (expires * G_USEC_PER_SEC <= g_get_real_time ())
    return gn_rpc_call_fail (call, GRPC_STATUS_PERMISSION_DENIED, "upload_url_expired",
                             "the upload URL has expired; ask for a new one");
  return GRPC_STATUS_OK;
}

/* --- rows to messages ----------------------------------------------------------------- */

#define MEDIA_COLUMNS                                                                              \
  "m.id, m.user_id, m.kind, m.content_type, m.width, m.height, m.duration_ms, m.blurhash,"         \
  " m.state = 'confirmed', (extract(epoch FROM m.created_at) * 1000000)::int8,"                    \
  " coalesce(m.post_id::text, '')"

static Generia__Media__V1__Media *
media_from_row (gn_arena *arena, PGresult *res, int row)
{
  Generia__Media__V1__Media *media = gn_arena_alloc (arena, sizeof *media);
  generia__media__v1__media__init (media);
  media->id = gn_arena_strdup (arena, PQgetvalue (res, row, 0));
  media->user_id = gn_arena_strdup (arena, PQgetvalue (res, row, 1));
  media->kind = (Generia__Media__V1__MediaKind)atoi (PQgetvalue (res, row, 2));
  media->content_type = gn_arena_strdup (arena, PQgetvalue (res, row, 3));
  media->width = atoi (PQgetvalue (res, row, 4));
  media->height = atoi (PQgetvalue (res, row, 5));
  media->duration_ms = g_ascii_strtoll (PQgetvalue (res, row, 6), NULL, 10);
  media->blurhash = gn_arena_strdup (arena, PQgetvalue (res, row, 7));
  media->confirmed = PQgetvalue (res, row, 8)[0] == 't';
  media->created_at_us = g_ascii_strtoll (PQgetvalue (res, row, 9), NULL, 10);
  media->post_id = gn_arena_strdup (arena, PQgetvalue (res, row, 10));
  return media;
}

/* Loads the variants of every media item in `media` (one query) and attaches them in the
 * order original, medium, thumbnail. */
static gboolean
load_variants (gn_arena *arena, PGconn *conn, Generia__Media__V1__Media **media, size_t n,
               GError **error)
{
  if (n == 0)
    return TRUE;
  GString *array = g_string_new ("{");
  for (size_t i = 0; i < n; i++)
    g_string_append_printf (array, "%s%s", i > 0 ? "," : "", media[i]->id);
  g_string_append_c (array, '}');
  const char *params[] = { array->str };
  PGresult *res = gn_pg_exec (conn, error,
                              "SELECT media_id, name, storage_key, content_type, width, height,"
                              " size_bytes FROM media.variants"
                              " WHERE media_id = ANY($1::uuid[])"
                              " ORDER BY media_id,"
                              " CASE name WHEN 'original' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END",
                              1, params);
  g_string_free (array, TRUE);
  if (res == NULL)
    return FALSE;
  for (size_t i = 0; i < n; i++) {
    media[i]->variants = gn_arena_alloc (arena, sizeof *media[i]->variants * GN_MEDIA_VARIANTS);
    media[i]->n_variants = 0;
  }
  for (int row = 0; row < PQntuples (res); row++) {
    const char *media_id = PQgetvalue (res, row, 0);
    for (size_t i = 0; i < n; i++) {
      if (strcmp (media[i]->id, media_id) != 0 || media[i]->n_variants >= GN_MEDIA_VARIANTS)
        continue;
      Generia__Media__V1__Variant *variant = gn_arena_alloc (arena, sizeof *variant);
      generia__media__v1__variant__init (variant);
      variant->name = gn_arena_strdup (arena, PQgetvalue (res, row, 1));
      variant->storage_key = gn_arena_strdup (arena, PQgetvalue (res, row, 2));
      variant->content_type = gn_arena_strdup (arena, PQgetvalue (res, row, 3));
      variant->width = atoi (PQgetvalue (res, row, 4));
      variant->height = atoi (PQgetvalue (res, row, 5));
      variant->size_bytes = g_ascii_strtoll (PQgetvalue (res, row, 6), NULL, 10);
      media[i]->variants[media[i]->n_variants++] = variant;
    }
  }
  PQclear (res);
  return TRUE;
}

/* Selects media rows by id (`where` adds conditions on m) with their variants. */
static grpc_status_code
fetch_media (gn_rpc_call *call, PGconn *conn, const char *id_array, const char *where,
             const char *extra_param, Generia__Media__V1__Media ***out, size_t *n_out)
{
  gn_arena *arena = gn_rpc_call_arena (call);
  g_autoptr (GError) error = NULL;
  g_autofree char *sql = g_strdup_printf ("SELECT " MEDIA_COLUMNS " FROM media.media m"
                                          " WHERE m.id = ANY($1::uuid[]) AND (%s)",
                                          where);
  const char *params[] = { id_array, extra_param };
  PGresult *res = gn_pg_exec (conn, &error, sql, extra_param != NULL ? 2 : 1, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  int rows = PQntuples (res);
  Generia__Media__V1__Media **media = gn_arena_alloc (arena, sizeof *media * (size_t)(rows + 1));
  for (int i = 0; i < rows; i++)
    media[i] = media_from_row (arena, res, i);
  PQclear (res);
  if (!load_variants (arena, conn, media, (size_t)rows, &error))
    return gn_service_fail_internal (call, error);
  *out = media;
  *n_out = (size_t)rows;
  return GRPC_STATUS_OK;
}

/* --- object removal -------------------------------------------------------------------- */

/* Removes the stored objects of one media item, then its row.  The row is marked "deleting"
 * first by the caller; a failure leaves it for the sweep to retry. */
static gboolean
remove_media_objects_and_row (media_state *state, PGconn *conn, const char *media_id,
                              GPtrArray *removed_keys, GError **error)
{
  const char *params[] = { media_id };
  PGresult *res = gn_pg_exec (
      conn, error, "SELECT storage_key FROM media.variants WHERE media_id = $1", 1, params);
  if (res == NULL)
    return FALSE;
  for (int i = 0; i < PQntuples (res); i++) {
    const char *key = PQgetvalue (res, i, 0);
    if (!gn_storage_remove (state->storage, key, error)) {
      PQclear (res);
      return FALSE;
    }
    if (removed_keys != NULL)
      g_ptr_array_add (removed_keys, g_strdup (key));
  }
  PQclear (res);
  res = gn_pg_exec (conn, error, "DELETE FROM media.media WHERE id = $1", 1, params);
  PQclear (res);
  return res != NULL;
}

/* Tells the CDN to forget its copies of removed objects (best effort: they are unreachable
 * once their objects are gone, and signed URLs expire). */
static void
invalidate_cdn (media_state *state, gn_rpc_call *parent, GPtrArray *keys)
{
  if (keys->len == 0 || state->cdn_address == NULL)
    return;
  gn_arena *arena = gn_arena_new ();
  Generia__Cdn__V1__InvalidateCacheRequest req = GENERIA__CDN__V1__INVALIDATE_CACHE_REQUEST__INIT;
  req.storage_keys = (char **)keys->pdata;
  req.n_storage_keys = keys->len;
  gn_rpc_call_options options = { .parent = parent, .timeout_ms = 2000 };
  gn_rpc_status status;
  ProtobufCMessage *response = NULL;
  if (gn_rpc_unary (gn_rpc_client_get (state->cdn_address),
                    &generia__cdn__v1__cdnservice__descriptor, "InvalidateCache", &req.base,
                    &response, arena, &options, &status)
      != GRPC_STATUS_OK)
    gn_warn ("CDN did not invalidate %u objects: %s", keys->len, status.message);
  gn_arena_free (arena);
}

/* --- CreateUploadURL -------------------------------------------------------------------- */

static const char *const accepted_types[] = {
  "image/jpeg", "image/png", "image/webp", "image/gif", "image/heic",
  "image/heif", "video/mp4", "video/webm", NULL,
};

static gboolean
type_is_accepted (const char *content_type)
{
  for (const char *const *t = accepted_types; *t != NULL; t++)
    if (g_ascii_strcasecmp (content_type, *t) == 0)
      return TRUE;
  return FALSE;
}

/* The last path segment, without control characters, at most MAX_FILENAME bytes. */
static char *
clean_filename (gn_arena *arena, const char *name)
{
  const char *slash = strrchr (name, '/');
  const char *base = slash != NULL ? slash + 1 : name;
  char *out = gn_arena_strdup (arena, base);
  if (!g_utf8_validate (out, -1, NULL))
    return gn_arena_strdup (arena, "upload");
  for (char *p = out; *p != '\0'; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
      *p = '_';
  if (strlen (out) > MAX_FILENAME)
    *g_utf8_find_prev_char (out, out + MAX_FILENAME) = '\0';
  return out;
}

static grpc_status_code
handle_create_upload_url (gn_rpc_call *call, const ProtobufCMessage *message,
                          ProtobufCMessage **response)
{
  const Generia__Media__V1__CreateUploadURLRequest *req = (const void *)message;
  media_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  if (req->content_type[0] != '\0' && !type_is_accepted (req->content_type))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "unsupported_media_type",
                             "%s is not a supported type (JPEG, PNG, WebP, GIF, HEIC, MP4, WebM)",
                             req->content_type);
  if (req->size <= 0)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_request",
                             "size must be the file's size in bytes");
  if ((uint64_t)req->size > state->max_upload_bytes)
    return gn_rpc_call_fail (call, GRPC_STATUS_OUT_OF_RANGE, "file_too_large",
                             "the file is %" G_GINT64_FORMAT " bytes; the limit is %zu bytes",
                             req->size, state->max_upload_bytes);

  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  char size[24], ttl[16];
  g_snprintf (size, sizeof size, "%" G_GINT64_FORMAT, req->size);
  g_snprintf (ttl, sizeof ttl, "%d", state->upload_url_ttl_s);
  const char *params[] = { gn_rpc_call_user_id (call), clean_filename (arena, req->filename),
                           req->content_type, size, ttl };
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  PGresult *res = gn_pg_exec (conn, &error,
                              "INSERT INTO media.media (user_id, state, filename, content_type,"
                              " declared_size, expires_at)"
                              " VALUES ($1, 'pending', $2, $3, $4,"
                              "  date_trunc('second', now()) + make_interval(secs => $5::int))"
                              " RETURNING id, extract(epoch FROM expires_at)::int8",
                              5, params);
  if (res == NULL) {
    gn_service_rollback (conn);
    return gn_service_fail_internal (call, error);
  }
  Generia__Media__V1__CreateUploadURLResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__media__v1__create_upload_urlresponse__init (out);
  out->media_id = gn_arena_strdup (arena, PQgetvalue (res, 0, 0));
  int64_t expires = g_ascii_strtoll (PQgetvalue (res, 0, 1), NULL, 10);
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    return gn_service_fail_internal (call, error);
  char signature[crypto_auth_hmacsha256_BYTES * 2];
  upload_signature (&state->upload_key, out->media_id, expires, req->size, signature);
  out->upload_path = gn_arena_printf (arena,
                                      "/api/v1/media/%s/content?expires=%" G_GINT64_FORMAT
                                      "&size=%" G_GINT64_FORMAT "&signature=%s",
                                      out->media_id, expires, req->size, signature);
  out->expires_at_us = expires * G_USEC_PER_SEC;
  *response = &out->base;
  return GRPC_STATUS_OK;
}

/* The gateway asks this once the PUT's headers are in, so a forged, expired or used URL is
 * refused before a byte of its body is read.  Costs one HMAC and one primary-key lookup. */
static grpc_status_code
handle_check_upload_url (gn_rpc_call *call, const ProtobufCMessage *message,
                         ProtobufCMessage **response)
{
  const Generia__Media__V1__CheckUploadURLRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code;
  g_autoptr (GError) error = NULL;

  code = check_upload_url (call, req->media_id, req->expires, req->size, req->signature);
  if (code != GRPC_STATUS_OK)
    return code;
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  const char *params[] = { req->media_id };
  PGresult *res = gn_pg_exec (conn, &error,
                              "SELECT 1 FROM media.media"
                              " WHERE id = $1 AND state = 'pending' AND expires_at > now()",
                              1, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  int pending = PQntuples (res);
  PQclear (res);
  if (pending == 0)
    return gn_rpc_call_fail (call, GRPC_STATUS_FAILED_PRECONDITION, "upload_not_pending",
                             "this upload URL was already used");
  Generia__Media__V1__CheckUploadURLResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__media__v1__check_upload_urlresponse__init (out);
  out->size = MIN (req->size, (int64_t)state_of (call)->max_upload_bytes);
  *response = &out->base;
  return GRPC_STATUS_OK;
}

/* --- Upload ----------------------------------------------------------------------------- */

typedef struct {
  char *spool_path;
  char *work_dir;
  gn_media_result result;
  gboolean have_result;
  GPtrArray *put_keys; /* objects already in storage */
} upload_job;

static void
upload_job_clear (upload_job *job)
{
  if (job->have_result)
    gn_media_result_clear (&job->result);
  if (job->spool_path != NULL) {
    g_unlink (job->spool_path);
    g_free (job->spool_path);
  }
  if (job->work_dir != NULL) {
    g_autoptr (GDir) dir = g_dir_open (job->work_dir, 0, NULL);
    const char *name;
    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *path = g_build_filename (job->work_dir, name, NULL);
      g_unlink (path);
    }
    g_rmdir (job->work_dir);
    g_free (job->work_dir);
  }
  if (job->put_keys != NULL)
    g_ptr_array_free (job->put_keys, TRUE);
}

static const char *
extension_for (const char *content_type)
{
  if (strcmp (content_type, "video/mp4") == 0)
    return "mp4";
  if (strcmp (content_type, "video/webm") == 0)
    return "webm";
  return "jpg";
}

/* Reads the stream into the job's spool file; returns the byte count, or -1 after failing the
 * call (or when the stream broke). */
static int64_t
receive_bytes (gn_rpc_call *call, gn_rpc_reader *reader, upload_job *job, size_t limit,
               grpc_status_code *code)
{
  media_state *state = state_of (call);
  job->spool_path = g_build_filename (state->spool_dir, "upload-XXXXXX", NULL);
  int fd = g_mkstemp_full (job->spool_path, O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    gn_error ("cannot create a spool file in %s: %s", state->spool_dir, g_strerror (errno));
    g_clear_pointer (&job->spool_path, g_free);
    *code = gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
    return -1;
  }
  int64_t total = 0;
  for (;;) {
    ProtobufCMessage *message = NULL;
    int got = gn_rpc_reader_next (reader, &message);
    if (got < 0) {
      close (fd);
      *code = GRPC_STATUS_CANCELLED;
      return -1;
    }
    if (got == 0)
      break;
    const Generia__Media__V1__UploadChunk *chunk = (const void *)message;
    if (chunk->part_case != GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_DATA) {
      close (fd);
      *code = gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_request",
                                "an upload has one start message, then data");
      return -1;
    }
    total += (int64_t)chunk->data.len;
    if ((uint64_t)total > limit) {
      close (fd);
      *code = gn_rpc_call_fail (call, GRPC_STATUS_OUT_OF_RANGE, "file_too_large",
                                "the file is larger than the limit of %zu bytes", limit);
      return -1;
    }
    const uint8_t *p = chunk->data.data;
    size_t left = chunk->data.len;
    while (left > 0) {
      ssize_t n = write (fd, p, left);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        gn_error ("cannot write %s: %s", job->spool_path, g_strerror (errno));
        close (fd);
        *code = gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
        return -1;
      }
      p += n;
      left -= (size_t)n;
    }
  }
  if (close (fd) != 0) {
    gn_error ("cannot write %s: %s", job->spool_path, g_strerror (errno));
    *code = gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
    return -1;
  }
  if (total == 0)
    *code = gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "empty_upload",
                              "the upload is empty");
  return total > 0 ? total : -1;
}

/* Sniffs and processes the spooled file into variants. */
static grpc_status_code
make_variants (gn_rpc_call *call, upload_job *job)
{
  media_state *state = state_of (call);
  g_autoptr (GError) error = NULL;
  gn_media_type type;

  if (!gn_media_sniff (job->spool_path, &type, &error))
    goto fail;
  job->work_dir = g_build_filename (state->spool_dir, "variants-XXXXXX", NULL);
  if (g_mkdtemp_full (job->work_dir, 0700) == NULL) {
    gn_error ("cannot create a folder in %s: %s", state->spool_dir, g_strerror (errno));
    g_clear_pointer (&job->work_dir, g_free);
    return gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
  }
  if (!gn_media_process (job->spool_path, &type, &state->limits, job->work_dir, &job->result,
                         &error))
    goto fail;
  job->have_result = TRUE;
  return GRPC_STATUS_OK;

fail:
  if (g_error_matches (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "unsupported_media_type", "%s",
                             error->message);
  if (g_error_matches (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_TOO_LARGE))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "media_too_large", "%s",
                             error->message);
  if (g_error_matches (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_media", "%s",
                             error->message);
  gn_error ("processing an upload failed: %s", error->message);
  return gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
}

static char *
variant_key (gn_arena *arena, const char *media_id, const gn_media_variant *variant)
{
  return gn_arena_printf (arena, "media/%s/%s-%s.%s", media_id, variant->name, variant->sha256,
                          extension_for (variant->content_type));
}

/* In one transaction: the media row enters "storing" with the processing results and the
 * variant rows are written.  `presigned`: the row exists (claimed); otherwise it is created. */
static gboolean
record_variants (gn_rpc_call *call, PGconn *conn, const char *media_id, const char *user_id,
                 const char *filename, gboolean presigned, upload_job *job, GError **error)
{
  gn_arena *arena = gn_rpc_call_arena (call);
  const gn_media_result *r = &job->result;
  char kind[4], width[16], height[16], duration[24], grace[16];
  g_snprintf (kind, sizeof kind, "%d", r->type.kind == GN_MEDIA_KIND_VIDEO ? 2 : 1);
  g_snprintf (width, sizeof width, "%d", r->width);
  g_snprintf (height, sizeof height, "%d", r->height);
  g_snprintf (duration, sizeof duration, "%" G_GINT64_FORMAT, r->duration_ms);
  g_snprintf (grace, sizeof grace, "%d", IN_FLIGHT_GRACE_S);

  if (!gn_service_begin (call, conn, error))
    return FALSE;
  PGresult *res;
  if (presigned) {
    const char *params[]
        = { media_id, kind, r->type.content_type, width, height, duration, r->blurhash, grace };
    res = gn_pg_exec (conn, error,
                      "UPDATE media.media SET state = 'storing', kind = $2, content_type = $3,"
                      " width = $4, height = $5, duration_ms = $6, blurhash = $7,"
                      " expires_at = greatest(expires_at, now() + make_interval(secs => $8::int))"
                      " WHERE id = $1 AND state = 'receiving'",
                      8, params);
  } else {
    const char *params[]
        = { media_id,    user_id,  kind, r->type.content_type, width, height, duration,
            r->blurhash, filename, grace };
    res = gn_pg_exec (conn, error,
                      "INSERT INTO media.media (id, user_id, state, kind, content_type, width,"
                      " height, duration_ms, blurhash, filename, expires_at)"
                      " VALUES ($1, $2, 'storing', $3, $4, $5, $6, $7, $8, $9,"
                      "  now() + make_interval(secs => $10::int))",
                      10, params);
  }
  if (res == NULL)
    goto fail;
  PQclear (res);
  for (int i = 0; i < GN_MEDIA_VARIANTS; i++) {
    const gn_media_variant *v = &r->variants[i];
    char vw[16], vh[16], vsize[24];
    g_snprintf (vw, sizeof vw, "%d", v->width);
    g_snprintf (vh, sizeof vh, "%d", v->height);
    g_snprintf (vsize, sizeof vsize, "%" G_GINT64_FORMAT, v->size);
    const char *params[]
        = { media_id, v->name,  variant_key (arena, media_id, v), v->content_type, vw, vh,
            vsize,    v->sha256 };
    res = gn_pg_exec (conn, error,
                      "INSERT INTO media.variants (media_id, name, storage_key, content_type,"
                      " width, height, size_bytes, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      8, params);
    if (res == NULL)
      goto fail;
    PQclear (res);
  }
  if (!gn_service_commit (call, conn, error))
    goto fail;
  return TRUE;

fail:
  gn_service_rollback (conn);
  return FALSE;
}

/* Puts every variant into storage; on failure removes what was put. */
static gboolean
store_variants (gn_rpc_call *call, const char *media_id, upload_job *job, GError **error)
{
  media_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  job->put_keys = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < GN_MEDIA_VARIANTS; i++) {
    const gn_media_variant *v = &job->result.variants[i];
    char *key = variant_key (arena, media_id, v);
    if (!gn_storage_put_file (state->storage, key, v->path, v->content_type, error)) {
      for (guint k = 0; k < job->put_keys->len; k++) {
        g_autoptr (GError) ignored = NULL;
        if (!gn_storage_remove (state->storage, job->put_keys->pdata[k], &ignored))
          gn_warn ("cannot remove %s after a failed upload (the sweep retries): %s",
                   (const char *)job->put_keys->pdata[k], ignored->message);
      }
      return FALSE;
    }
    g_ptr_array_add (job->put_keys, g_strdup (key));
  }
  return TRUE;
}

/* Undoes the rows of a failed upload: a direct upload's row goes, a presigned upload's row
 * returns to "pending" so the same URL can be used again while it is valid. */
static void
forget_upload (PGconn *conn, const char *media_id, gboolean presigned, gboolean had_variants)
{
  g_autoptr (GError) error = NULL;
  const char *params[] = { media_id };
  PGresult *res;
  if (presigned) {
    res = gn_pg_exec (conn, &error, "DELETE FROM media.variants WHERE media_id = $1", 1, params);
    PQclear (res);
    if (res != NULL)
      res = gn_pg_exec (conn, &error,
                        "UPDATE media.media SET state = 'pending', kind = 0, width = 0,"
                        " height = 0, duration_ms = 0, blurhash = ''"
                        " WHERE id = $1 AND state IN ('receiving', 'storing')",
                        1, params);
  } else if (had_variants) {
    res = gn_pg_exec (conn, &error, "DELETE FROM media.media WHERE id = $1", 1, params);
  } else {
    return;
  }
  PQclear (res);
  if (res == NULL)
    gn_warn ("could not undo the rows of failed upload %s (the sweep removes them): %s", media_id,
             error->message);
}

static grpc_status_code
claim_presigned (gn_rpc_call *call, PGconn *conn, const Generia__Media__V1__UploadStart *start,
                 char **user_id, size_t *limit)
{
  media_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  g_autoptr (GError) error = NULL;

  grpc_status_code code
      = check_upload_url (call, start->media_id, start->expires, start->size, start->signature);
  if (code != GRPC_STATUS_OK)
    return code;

  const char *params[] = { start->media_id };
  PGresult *res = gn_pg_exec (conn, &error,
                              "UPDATE media.media SET state = 'receiving'"
                              " WHERE id = $1 AND state = 'pending' AND expires_at > now()"
                              " RETURNING user_id",
                              1, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  if (PQntuples (res) == 0) {
    PQclear (res);
    return gn_rpc_call_fail (call, GRPC_STATUS_FAILED_PRECONDITION, "upload_not_pending",
                             "this upload URL was already used");
  }
  *user_id = gn_arena_strdup (arena, PQgetvalue (res, 0, 0));
  PQclear (res);
  /* The signed size, which is the declared one: the gateway already cut the body there. */
  *limit = MIN ((uint64_t)start->size, (uint64_t)state->max_upload_bytes);
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_upload (gn_rpc_call *call, gn_rpc_reader *reader, ProtobufCMessage **response)
{
  media_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;
  upload_job job = { 0 };
  gboolean presigned = FALSE, claimed = FALSE, recorded = FALSE;
  char *media_id = NULL, *user_id = NULL, *filename = "";
  int64_t url_expires = 0;
  size_t limit = state->max_upload_bytes;
  PGconn *conn = NULL;
  g_autofree char *array = NULL;
  Generia__Media__V1__Media **media = NULL;
  size_t n = 0;

  ProtobufCMessage *first = NULL;
  int got = gn_rpc_reader_next (reader, &first);
  if (got < 0)
    return GRPC_STATUS_CANCELLED;
  const Generia__Media__V1__UploadChunk *chunk = (const void *)first;
  if (got == 0 || chunk->part_case != GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_START)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_request",
                             "an upload starts with an UploadStart message");
  /* The scratch arena is reused by the next read: keep what the start says. */
  const Generia__Media__V1__UploadStart *start = chunk->start;
  presigned = start->media_id[0] != '\0';
  if (presigned) {
    media_id = gn_arena_strdup (arena, start->media_id);
    url_expires = start->expires;
  } else {
    GN_RPC_REQUIRE_USER (call);
    user_id = gn_arena_strdup (arena, gn_rpc_call_user_id (call));
    filename = clean_filename (arena, start->filename);
    g_autofree char *uuid = g_uuid_string_random ();
    media_id = gn_arena_strdup (arena, uuid);
  }

  conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  if (presigned) {
    Generia__Media__V1__UploadStart copy = *start;
    copy.media_id = media_id;
    copy.signature = gn_arena_strdup (arena, start->signature);
    code = claim_presigned (call, conn, &copy, &user_id, &limit);
    if (code != GRPC_STATUS_OK)
      return code;
    claimed = TRUE;
  }

  if (receive_bytes (call, reader, &job, limit, &code) < 0)
    goto fail;
  if ((code = make_variants (call, &job)) != GRPC_STATUS_OK)
    goto fail;
  if (!record_variants (call, conn, media_id, user_id, filename, presigned, &job, &error)) {
    code = gn_service_fail_internal (call, error);
    goto fail;
  }
  recorded = TRUE;
  if (!store_variants (call, media_id, &job, &error)) {
    gn_error ("storing the variants of %s failed: %s", media_id, error->message);
    code = gn_rpc_call_fail (call, GRPC_STATUS_UNAVAILABLE, "storage_unavailable",
                             "media storage is unavailable; try again");
    goto fail;
  }

  /* An uploaded, unconfirmed item lives as long as its upload URL: the sweep takes it then. */
  char expires_text[24];
  g_snprintf (expires_text, sizeof expires_text, "%" G_GINT64_FORMAT, url_expires);
  const char *params[] = { media_id, expires_text };
  PGresult *res = presigned ? gn_pg_exec (conn, &error,
                                          "UPDATE media.media SET state = 'uploaded',"
                                          " expires_at = to_timestamp($2::int8)"
                                          " WHERE id = $1 AND state = 'storing'",
                                          2, params)
                            : gn_pg_exec (conn, &error,
                                          "UPDATE media.media SET state = 'confirmed',"
                                          " confirmed_at = now(), expires_at = NULL"
                                          " WHERE id = $1 AND state = 'storing'",
                                          1, params);
  if (res == NULL) {
    code = gn_service_fail_internal (call, error);
    goto fail_stored;
  }
  PQclear (res);

  array = g_strdup_printf ("{%s}", media_id);
  code = fetch_media (call, conn, array, "true", NULL, &media, &n);
  if (code != GRPC_STATUS_OK || n != 1) {
    if (code == GRPC_STATUS_OK)
      code = gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
    goto fail_stored;
  }
  gn_info ("stored %s %s (%d x %d) for user %s", presigned ? "upload" : "direct upload", media_id,
           media[0]->width, media[0]->height, user_id);
  *response = &media[0]->base;
  upload_job_clear (&job);
  return GRPC_STATUS_OK;

fail_stored:
  for (guint k = 0; job.put_keys != NULL && k < job.put_keys->len; k++) {
    g_autoptr (GError) ignored = NULL;
    gn_storage_remove (state->storage, job.put_keys->pdata[k], &ignored);
  }
fail:
  if (claimed || recorded)
    forget_upload (conn, media_id, presigned, recorded);
  upload_job_clear (&job);
  return code;
}

/* --- ConfirmUpload, GetMedia, GetMediaByIds --------------------------------------------- */

static grpc_status_code
handle_confirm_upload (gn_rpc_call *call, const ProtobufCMessage *message,
                       ProtobufCMessage **response)
{
  const Generia__Media__V1__ConfirmUploadRequest *req = (const void *)message;
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  if (!g_uuid_string_is_valid (req->media_id))
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "media_not_found", "no such media");
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  const char *params[] = { req->media_id, gn_rpc_call_user_id (call) };
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  PGresult *res = gn_pg_exec (conn, &error,
                              "UPDATE media.media SET state = 'confirmed',"
                              " confirmed_at = coalesce(confirmed_at, now()), expires_at = NULL"
                              " WHERE id = $1 AND user_id = $2"
                              " AND state IN ('uploaded', 'confirmed')"
                              " RETURNING id",
                              2, params);
  if (res == NULL) {
    gn_service_rollback (conn);
    return gn_service_fail_internal (call, error);
  }
  int confirmed = PQntuples (res);
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    return gn_service_fail_internal (call, error);
  if (confirmed == 0) {
    res = gn_pg_exec (conn, &error, "SELECT state FROM media.media WHERE id = $1 AND user_id = $2",
                      2, params);
    if (res == NULL)
      return gn_service_fail_internal (call, error);
    gboolean mine = PQntuples (res) > 0;
    PQclear (res);
    if (!mine)
      return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "media_not_found", "no such media");
    return gn_rpc_call_fail (call, GRPC_STATUS_FAILED_PRECONDITION, "upload_incomplete",
                             "the file has not been uploaded yet");
  }
  g_autofree char *array = g_strdup_printf ("{%s}", req->media_id);
  Generia__Media__V1__Media **media = NULL;
  size_t n = 0;
  if ((code = fetch_media (call, conn, array, "true", NULL, &media, &n)) != GRPC_STATUS_OK)
    return code;
  if (n != 1)
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "media_not_found", "no such media");
  *response = &media[0]->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_media (gn_rpc_call *call, const ProtobufCMessage *message, ProtobufCMessage **response)
{
  const Generia__Media__V1__GetMediaRequest *req = (const void *)message;
  grpc_status_code code = GRPC_STATUS_OK;

  if (!g_uuid_string_is_valid (req->media_id))
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "media_not_found", "no such media");
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  /* Others see confirmed media; the uploader also sees an upload waiting for confirmation. */
  const char *caller = gn_rpc_call_user_id (call);
  g_autofree char *array = g_strdup_printf ("{%s}", req->media_id);
  Generia__Media__V1__Media **media = NULL;
  size_t n = 0;
  code = fetch_media (call, conn, array,
                      "m.state = 'confirmed' OR (m.state = 'uploaded' AND m.user_id::text = $2)",
                      caller != NULL ? caller : "", &media, &n);
  if (code != GRPC_STATUS_OK)
    return code;
  if (n != 1)
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "media_not_found", "no such media");
  *response = &media[0]->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_media_by_ids (gn_rpc_call *call, const ProtobufCMessage *message,
                         ProtobufCMessage **response)
{
  const Generia__Media__V1__GetMediaByIdsRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;

  if (req->n_media_ids > MAX_BATCH)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "too_many_ids",
                             "at most %d ids per call", MAX_BATCH);
  Generia__Media__V1__GetMediaByIdsResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__media__v1__get_media_by_ids_response__init (out);
  *response = &out->base;
  char *array = uuid_array (arena, req->media_ids, req->n_media_ids);
  if (array == NULL)
    return GRPC_STATUS_OK;
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  Generia__Media__V1__Media **media = NULL;
  size_t n = 0;
  if ((code = fetch_media (call, conn, array, "m.state = 'confirmed'", NULL, &media, &n))
      != GRPC_STATUS_OK)
    return code;
  /* In the order asked for (an id asked twice is answered twice). */
  out->media = gn_arena_alloc (arena, sizeof *out->media * (req->n_media_ids + 1));
  for (size_t i = 0; i < req->n_media_ids; i++)
    for (size_t j = 0; j < n; j++)
      if (strcmp (media[j]->id, req->media_ids[i]) == 0) {
        out->media[out->n_media++] = media[j];
        break;
      }
  return GRPC_STATUS_OK;
}

/* --- AttachMedia ------------------------------------------------------------------------ */

static grpc_status_code
handle_attach_media (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  const Generia__Media__V1__AttachMediaRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  if (!g_uuid_string_is_valid (req->post_id))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_request",
                             "post_id is not a valid id");
  if (req->n_media_ids == 0 || req->n_media_ids > MAX_BATCH)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_media",
                             "a post needs at least one media item");
  for (size_t i = 0; i < req->n_media_ids; i++)
    if (!g_uuid_string_is_valid (req->media_ids[i]))
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_media",
                               "%s is not a media id", req->media_ids[i]);
  char *array = uuid_array (arena, req->media_ids, req->n_media_ids);
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  const char *params[] = { array, gn_rpc_call_user_id (call), req->post_id };
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  /* Lock the rows, then judge every one: all or nothing. */
  PGresult *res = gn_pg_exec (conn, &error,
                              "SELECT id, user_id::text = $2, state, coalesce(post_id::text, '')"
                              " FROM media.media WHERE id = ANY($1::uuid[]) FOR UPDATE",
                              2, params);
  if (res == NULL)
    goto fail;
  int rows = PQntuples (res);
  for (size_t i = 0; i < req->n_media_ids; i++) {
    int row = -1;
    for (int r = 0; r < rows; r++)
      if (strcmp (PQgetvalue (res, r, 0), req->media_ids[i]) == 0)
        row = r;
    if (row < 0 || PQgetvalue (res, row, 1)[0] != 't') {
      PQclear (res);
      gn_service_rollback (conn);
      return gn_rpc_call_fail (call, GRPC_STATUS_PERMISSION_DENIED, "media_not_yours",
                               "media %s is not one of your uploads", req->media_ids[i]);
    }
    if (strcmp (PQgetvalue (res, row, 2), "confirmed") != 0) {
      PQclear (res);
      gn_service_rollback (conn);
      return gn_rpc_call_fail (call, GRPC_STATUS_FAILED_PRECONDITION, "media_not_confirmed",
                               "media %s is not a confirmed upload", req->media_ids[i]);
    }
    const char *post = PQgetvalue (res, row, 3);
    if (post[0] != '\0' && strcmp (post, req->post_id) != 0) {
      PQclear (res);
      gn_service_rollback (conn);
      return gn_rpc_call_fail (call, GRPC_STATUS_FAILED_PRECONDITION, "media_in_use",
                               "media %s already belongs to another post", req->media_ids[i]);
    }
  }
  PQclear (res);
  res = gn_pg_exec (conn, &error,
                    "UPDATE media.media SET post_id = $3 WHERE id = ANY($1::uuid[])"
                    " AND user_id = $2",
                    3, params);
  if (res == NULL)
    goto fail;
  int attached = atoi (PQcmdTuples (res));
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    goto fail;
  Generia__Media__V1__AttachMediaResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__media__v1__attach_media_response__init (out);
  out->attached = attached;
  *response = &out->base;
  return GRPC_STATUS_OK;

fail:
  gn_service_rollback (conn);
  return gn_service_fail_internal (call, error);
}

/* --- DetachMedia, GetAttachedMedia -------------------------------------------------------
 *
 * The post service's way to undo or check an attach whose post was never published (post.c:
 * Creating a post).  Like AttachMedia they act for the caller only: the media's uploader, whose
 * token the post service forwards or, from its healing job, signs. */

/* What both need before their SQL: a post id that can be one, and the database; NULL with
 * *code set (the call failed) otherwise. */
static PGconn *
post_media_conn (gn_rpc_call *call, const char *post_id, grpc_status_code *code)
{
  if (!g_uuid_string_is_valid (post_id)) {
    *code = gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_request",
                              "post_id is not a valid id");
    return NULL;
  }
  return conn_or_fail (call, code);
}

static grpc_status_code
handle_detach_media (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  const Generia__Media__V1__DetachMediaRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  PGconn *conn = post_media_conn (call, req->post_id, &code);
  if (conn == NULL)
    return code;
  const char *params[] = { req->post_id, gn_rpc_call_user_id (call) };
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  PGresult *res = gn_pg_exec (conn, &error,
                              "UPDATE media.media SET post_id = NULL"
                              " WHERE post_id = $1 AND user_id = $2",
                              2, params);
  if (res == NULL) {
    gn_service_rollback (conn);
    return gn_service_fail_internal (call, error);
  }
  Generia__Media__V1__DetachMediaResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__media__v1__detach_media_response__init (out);
  out->detached = atoi (PQcmdTuples (res));
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    return gn_service_fail_internal (call, error);
  if (out->detached > 0)
    gn_info ("detached %d media from unpublished post %s", out->detached, req->post_id);
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_attached_media (gn_rpc_call *call, const ProtobufCMessage *message,
                           ProtobufCMessage **response)
{
  const Generia__Media__V1__GetAttachedMediaRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  PGconn *conn = post_media_conn (call, req->post_id, &code);
  if (conn == NULL)
    return code;
  const char *params[] = { req->post_id, gn_rpc_call_user_id (call) };
  PGresult *res = gn_pg_exec (conn, &error,
                              "SELECT id FROM media.media WHERE post_id = $1 AND user_id = $2"
                              " AND state = 'confirmed'",
                              2, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  Generia__Media__V1__GetAttachedMediaResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__media__v1__get_attached_media_response__init (out);
  int rows = PQntuples (res);
  out->media_ids = gn_arena_alloc (arena, sizeof *out->media_ids * (size_t)MAX (rows, 1));
  for (int i = 0; i < rows; i++)
    out->media_ids[i] = gn_arena_strdup (arena, PQgetvalue (res, i, 0));
  out->n_media_ids = (size_t)rows;
  PQclear (res);
  *response = &out->base;
  return GRPC_STATUS_OK;
}

/* --- DeleteMedia ------------------------------------------------------------------------ */

static grpc_status_code
handle_delete_media (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  const Generia__Media__V1__DeleteMediaRequest *req = (const void *)message;
  media_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  if (req->n_media_ids > MAX_BATCH)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "too_many_ids",
                             "at most %d ids per call", MAX_BATCH);
  Generia__Media__V1__DeleteMediaResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__media__v1__delete_media_response__init (out);
  *response = &out->base;
  char *array = uuid_array (arena, req->media_ids, req->n_media_ids);
  if (array == NULL)
    return GRPC_STATUS_OK;
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  const char *params[] = { array, gn_rpc_call_user_id (call) };
  PGresult *res = gn_pg_exec (conn, &error,
                              "SELECT count(*) FROM media.media"
                              " WHERE id = ANY($1::uuid[]) AND user_id::text <> $2",
                              2, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  gboolean others = atoi (PQgetvalue (res, 0, 0)) > 0;
  PQclear (res);
  if (others)
    return gn_rpc_call_fail (call, GRPC_STATUS_PERMISSION_DENIED, "media_not_yours",
                             "only the uploader can delete media");
  res = gn_pg_exec (conn, &error,
                    "UPDATE media.media SET state = 'deleting', expires_at = now()"
                    " WHERE id = ANY($1::uuid[]) AND user_id = $2 RETURNING id",
                    2, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < PQntuples (res); i++) {
    g_autoptr (GError) remove_error = NULL;
    if (remove_media_objects_and_row (state, conn, PQgetvalue (res, i, 0), keys, &remove_error))
      out->deleted++;
    else
      gn_warn ("media %s is marked for deletion; the sweep retries: %s", PQgetvalue (res, i, 0),
               remove_error->message);
  }
  PQclear (res);
  invalidate_cdn (state, call, keys);
  return GRPC_STATUS_OK;
}

/* --- HealthCheck ------------------------------------------------------------------------ */

static gboolean
storage_answers (void *data, GError **error)
{
  return gn_storage_check (data, error);
}

static grpc_status_code
handle_health_check (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  media_state *state = state_of (call);
  return gn_service_health (call, "media", state->database_url, storage_answers, state->storage,
                            response);
}

/* --- the sweep -------------------------------------------------------------------------- */

/* Removes rows whose time is up: unconfirmed presigned uploads past their URL's expiry, rows
 * left "receiving"/"storing" by a process that died, and "deleting" rows whose objects could
 * not be removed before.  Their objects go first, then the rows. */
static int
sweep_once (media_state *state, GError **error)
{
  PGconn *conn = gn_pg_thread_conn (state->database_url, error);
  if (conn == NULL)
    return -1;
  char grace[16];
  g_snprintf (grace, sizeof grace, "%d", IN_FLIGHT_GRACE_S);
  const char *params[] = { grace };
  PGresult *res = gn_pg_exec (conn, error,
                              "UPDATE media.media SET state = 'deleting' WHERE id IN ("
                              " SELECT id FROM media.media"
                              " WHERE state <> 'confirmed' AND expires_at < now()"
                              " AND (state NOT IN ('receiving', 'storing')"
                              "      OR expires_at < now() - make_interval(secs => $1::int))"
                              " ORDER BY expires_at LIMIT 200 FOR UPDATE SKIP LOCKED)"
                              " RETURNING id",
                              1, params);
  if (res == NULL)
    return -1;
  int removed = 0;
  for (int i = 0; i < PQntuples (res); i++) {
    g_autoptr (GError) remove_error = NULL;
    if (remove_media_objects_and_row (state, conn, PQgetvalue (res, i, 0), NULL, &remove_error))
      removed++;
    else
      gn_warn ("sweep: cannot remove media %s yet: %s", PQgetvalue (res, i, 0),
               remove_error->message);
  }
  PQclear (res);
  return removed;
}

static void
sweep (void *data)
{
  g_autoptr (GError) error = NULL;
  int removed = sweep_once (data, &error);
  if (removed < 0)
    gn_warn ("sweep failed: %s", error->message);
  else if (removed > 0)
    gn_info ("sweep removed %d expired or abandoned uploads", removed);
}

/* --- module ----------------------------------------------------------------------------- */

static const gn_rpc_method media_methods[] = {
  { "CreateUploadURL", handle_create_upload_url, GN_RPC_BLOCKING, NULL },
  { "CheckUploadURL", handle_check_upload_url, GN_RPC_BLOCKING, NULL },
  { "Upload", NULL, GN_RPC_BLOCKING, handle_upload },
  { "ConfirmUpload", handle_confirm_upload, GN_RPC_BLOCKING, NULL },
  { "GetMedia", handle_get_media, GN_RPC_BLOCKING, NULL },
  { "GetMediaByIds", handle_get_media_by_ids, GN_RPC_BLOCKING, NULL },
  { "AttachMedia", handle_attach_media, GN_RPC_BLOCKING, NULL },
  { "DetachMedia", handle_detach_media, GN_RPC_BLOCKING, NULL },
  { "GetAttachedMedia", handle_get_attached_media, GN_RPC_BLOCKING, NULL },
  { "DeleteMedia", handle_delete_media, GN_RPC_BLOCKING, NULL },
  { "HealthCheck", handle_health_check, GN_RPC_BLOCKING, NULL },
  { NULL, NULL, 0, NULL },
};

static gboolean
media_migrate (const gn_service_env *env, GError **error)
{
  return gn_service_migrate (env, "media", error);
}

static void
media_state_free (media_state *state)
{
  gn_periodic_stop (state->sweeper);
  gn_storage_free (state->storage);
  sodium_memzero (&state->upload_key, sizeof state->upload_key);
  g_free (state->database_url);
  g_free (state->cdn_address);
  g_free (state->spool_dir);
  g_free (state);
}

static gboolean
media_init (const gn_service_env *env, gn_rpc_service *service, GError **error)
{
  const gn_config *config = env->config;
  if (!gn_media_init (error))
    return FALSE;
  media_state *state = g_new0 (media_state, 1);
  state->database_url = g_strdup (env->database_url);
  state->cdn_address = g_strdup (config->service_address[GN_SERVICE_CDN]);
  state->spool_dir = g_strdup (config->media_spool_dir);
  state->max_upload_bytes = config->media_max_upload_bytes;
  state->upload_url_ttl_s = config->media_upload_url_ttl_s;
  gn_media_limits_init (&state->limits);
  state->limits.max_pixels = (int64_t)config->media_max_pixels;
  state->limits.max_video_ms = (int64_t)config->media_max_video_seconds * 1000;
  state->limits.original_max_side = config->media_original_max_side;

  if (g_mkdir_with_parents (state->spool_dir, 0700) != 0) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot create %s: %s",
                 state->spool_dir, g_strerror (errno));
    goto fail;
  }
  if (!gn_token_key_load (&state->upload_key, config->media_secret_file, error))
    goto fail;
  state->storage = gn_storage_new_from_config (config, error);
  if (state->storage == NULL)
    goto fail;
  state->sweeper
      = gn_periodic_start ("media-sweep", "media", config->media_sweep_interval_s, sweep, state);

  service->descriptor = &generia__media__v1__media_service__descriptor;
  service->methods = media_methods;
  service->log_name = "media";
  service->data = state;
  return TRUE;

fail:
  media_state_free (state);
  return FALSE;
}

static void
media_fini (gn_rpc_service *service)
{
  if (service->data == NULL)
    return;
  media_state_free (service->data);
  service->data = NULL;
}

const gn_service_module gn_media_module = {
  .id = GN_SERVICE_MEDIA,
  .migrate = media_migrate,
  .init = media_init,
  .fini = media_fini,
};
