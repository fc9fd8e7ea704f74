/* test-rpc.c - the rpc layer against a real gRPC server on real sockets.
 *
 * The server registers test handlers for methods of the real AuthService descriptor (this
 * tests the rpc layer, not the auth service): Register echoes what the handler saw, Login is
 * a blocking handler that sleeps for `password` milliseconds, ValidateToken needs a verified
 * user, GetUserInfo misbehaves (OK without a response) and RefreshToken makes a nested call
 * with the server call as parent.  Logout and HealthCheck stay unregistered, so calling them
 * exercises the UNIMPLEMENTED catch-all.  A few checks use raw gRPC core calls to see what
 * the client API does not expose (initial metadata, undecodable payloads, arbitrary paths).
 *
 * Client streaming uses the real MediaService descriptor's Upload method (stream of
 * UploadChunk: a start part, then data parts).  The test handler reads the whole stream,
 * hashes the data parts in order with SHA-256 and answers a Media whose id is the hash; an
 * upload named "refuse" is refused after its first message without reading the rest, one
 * named "refuse-late" likewise but 200 ms later (the client is then blocked in flow control). */
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <string.h>

#include "auth.pb-c.h"
#include "media.pb-c.h"
#include "rpc.h"

#define AUTH_SERVICE (&generia__auth__v1__auth_service__descriptor)
#define MEDIA_SERVICE (&generia__media__v1__media_service__descriptor)
#define MIB (1024 * 1024)

typedef Generia__Auth__V1__RegisterRequest RegisterRequest;
typedef Generia__Auth__V1__LoginRequest LoginRequest;
typedef Generia__Auth__V1__Session Session;
typedef Generia__Auth__V1__User User;
typedef Generia__Media__V1__UploadChunk UploadChunk;
typedef Generia__Media__V1__UploadStart UploadStart;
typedef Generia__Media__V1__Media Media;

/* What the handlers saw, for the test to check afterwards. */
static struct {
  GMutex lock;
  GCond cond;
  int login_started;
  int login_finished;
  bool nested_done;
  grpc_status_code nested_code;
  gint64 nested_ms;
  int observed;
  grpc_status_code observed_status[64];
  char observed_method[64][32];
  char observed_request_id[64][64];
  /* Upload handlers. */
  int uploads_started;
  int uploads_finished;
  int upload_parts;     /* data parts the latest upload has read */
  int upload_last_next; /* what its last gn_rpc_reader_next() returned */
} seen;

typedef struct {
  char *target; /* where RefreshToken sends its nested call */
  const char *label;
} service_state;

static void
seen_reset (void)
{
  g_mutex_lock (&seen.lock);
  seen.login_started = 0;
  seen.login_finished = 0;
  seen.nested_done = false;
  seen.nested_code = GRPC_STATUS_OK;
  seen.nested_ms = 0;
  seen.observed = 0;
  seen.uploads_started = 0;
  seen.uploads_finished = 0;
  seen.upload_parts = 0;
  seen.upload_last_next = 99;
  g_mutex_unlock (&seen.lock);
}

static char *
dup_or_empty (gn_arena *arena, const char *s)
{
  return gn_arena_strdup (arena, s != NULL ? s : "");
}

static Session *
session_new (gn_arena *arena)
{
  Session *session = gn_arena_alloc (arena, sizeof *session);
  User *user = gn_arena_alloc (arena, sizeof *user);
  generia__auth__v1__session__init (session);
  generia__auth__v1__user__init (user);
  session->user = user;
  return session;
}

static grpc_status_code
handle_register (gn_rpc_call *call, const ProtobufCMessage *request, ProtobufCMessage **response)
{
  const RegisterRequest *req = (const RegisterRequest *)request;
  gn_arena *arena = gn_rpc_call_arena (call);
  const service_state *state = gn_rpc_call_service_data (call);

  if (g_str_has_prefix (req->username, "taken"))
    return gn_rpc_call_fail (call, GRPC_STATUS_ALREADY_EXISTS, "username_taken",
                             "username %s is already taken", req->username);
  Session *session = session_new (arena);
  session->access_token = gn_arena_strdup (arena, req->username);
  session->refresh_token = dup_or_empty (arena, gn_rpc_call_traceparent (call));
  session->access_expires_at_us = (int64_t)strlen (req->password);
  session->user->id = gn_arena_strdup (arena, gn_rpc_call_request_id (call));
  session->user->username = dup_or_empty (arena, gn_rpc_call_user_id (call));
  session->user->email = dup_or_empty (arena, gn_rpc_call_authorization (call));
  session->user->display_name = gn_arena_strdup (arena, gn_rpc_call_method (call));
  session->user->bio = gn_arena_strdup (arena, state->label);
  *response = &session->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_login (gn_rpc_call *call, const ProtobufCMessage *request, ProtobufCMessage **response)
{
  const LoginRequest *req = (const LoginRequest *)request;

  g_mutex_lock (&seen.lock);
  seen.login_started++;
  g_cond_broadcast (&seen.cond);
  g_mutex_unlock (&seen.lock);

  g_usleep ((gulong)g_ascii_strtoull (req->password, NULL, 10) * 1000);
  Session *session = session_new (gn_rpc_call_arena (call));
  session->access_token = gn_arena_strdup (gn_rpc_call_arena (call), req->email_or_username);

  g_mutex_lock (&seen.lock);
  seen.login_finished++;
  g_cond_broadcast (&seen.cond);
  g_mutex_unlock (&seen.lock);
  *response = &session->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_validate_token (gn_rpc_call *call, const ProtobufCMessage *request,
                       ProtobufCMessage **response)
{
  GN_RPC_REQUIRE_USER (call);
  Generia__Auth__V1__ValidateTokenResponse *answer
      = gn_arena_alloc (gn_rpc_call_arena (call), sizeof *answer);
  generia__auth__v1__validate_token_response__init (answer);
  answer->valid = true;
  answer->user_id = gn_arena_strdup (gn_rpc_call_arena (call), gn_rpc_call_user_id (call));
  *response = &answer->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_user_info (gn_rpc_call *call, const ProtobufCMessage *request,
                      ProtobufCMessage **response)
{
  return GRPC_STATUS_OK; /* a broken handler: OK without a response */
}

/* Calls Login (sleeping 2 s) with this call as parent and the default 5 s timeout: only the
 * parent's deadline can end it early. */
static grpc_status_code
handle_refresh_token (gn_rpc_call *call, const ProtobufCMessage *request,
                      ProtobufCMessage **response)
{
  const service_state *state = gn_rpc_call_service_data (call);
  LoginRequest login = GENERIA__AUTH__V1__LOGIN_REQUEST__INIT;
  login.email_or_username = "nested";
  login.password = "2000";
  gn_rpc_call_options options = { .parent = call };
  gn_rpc_status status;
  ProtobufCMessage *answer;

  gint64 start = g_get_monotonic_time ();
  grpc_status_code code
      = gn_rpc_unary (gn_rpc_client_get (state->target), AUTH_SERVICE, "Login", &login.base,
                      &answer, gn_rpc_call_arena (call), &options, &status);
  g_mutex_lock (&seen.lock);
  seen.nested_code = code;
  seen.nested_ms = (g_get_monotonic_time () - start) / 1000;
  seen.nested_done = true;
  g_cond_broadcast (&seen.cond);
  g_mutex_unlock (&seen.lock);
  return gn_rpc_call_fail (call, code, "nested", "nested call: %s", status.message);
}

static const gn_rpc_method auth_methods[] = {
  { "Register", handle_register, 0 },
  { "Login", handle_login, GN_RPC_BLOCKING },
  { "ValidateToken", handle_validate_token, 0 },
  { "GetUserInfo", handle_get_user_info, 0 },
  { "RefreshToken", handle_refresh_token, GN_RPC_BLOCKING },
  { NULL, NULL, 0 },
};

static void
upload_record (int parts, int next, bool finished)
{
  g_mutex_lock (&seen.lock);
  seen.upload_parts = parts;
  seen.upload_last_next = next;
  if (finished)
    seen.uploads_finished++;
  g_cond_broadcast (&seen.cond);
  g_mutex_unlock (&seen.lock);
}

static grpc_status_code
handle_upload (gn_rpc_call *call, gn_rpc_reader *reader, ProtobufCMessage **response)
{
  gn_arena *arena = gn_rpc_call_arena (call);
  ProtobufCMessage *message;
  int parts = 0;
  int64_t bytes = 0;

  g_mutex_lock (&seen.lock);
  seen.uploads_started++;
  g_mutex_unlock (&seen.lock);

  int next = gn_rpc_reader_next (reader, &message);
  if (next <= 0) {
    upload_record (0, next, true);
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "empty_upload", "empty upload");
  }
  const UploadChunk *chunk = (const UploadChunk *)message;
  if (chunk->part_case != GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_START) {
    upload_record (0, next, true);
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "start_expected",
                             "an upload begins with its start part");
  }
  /* The message is only valid until the next read: keep a copy. */
  const char *filename = gn_arena_strdup (arena, chunk->start->filename);
  if (g_str_equal (filename, "refuse") || g_str_equal (filename, "refuse-late")) {
    if (g_str_equal (filename, "refuse-late"))
      g_usleep (200 * 1000);
    upload_record (0, next, true);
    return gn_rpc_call_fail (call, GRPC_STATUS_PERMISSION_DENIED, "upload_refused",
                             "uploads named %s are refused", filename);
  }

  GChecksum *checksum = g_checksum_new (G_CHECKSUM_SHA256);
  while ((next = gn_rpc_reader_next (reader, &message)) == 1) {
    chunk = (const UploadChunk *)message;
    if (chunk->part_case != GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_DATA)
      break;
    g_checksum_update (checksum, chunk->data.data, (gssize)chunk->data.len);
    bytes += (int64_t)chunk->data.len;
    upload_record (++parts, next, false);
  }
  upload_record (parts, next, true);
  grpc_status_code code = GRPC_STATUS_OK;
  if (next == 1)
    code = gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "data_expected",
                             "one start part only");
  else if (next == 0) {
    Media *media = gn_arena_alloc (arena, sizeof *media);
    generia__media__v1__media__init (media);
    media->id = gn_arena_strdup (arena, g_checksum_get_string (checksum));
    media->user_id = dup_or_empty (arena, gn_rpc_call_user_id (call));
    media->content_type = gn_arena_strdup (arena, gn_rpc_call_request_id (call));
    media->blurhash = (char *)filename;
    media->duration_ms = bytes;
    media->width = parts;
    *response = &media->base;
  } else
    code = GRPC_STATUS_CANCELLED; /* not sent: the stream broke */
  g_checksum_free (checksum);
  return code;
}

static const gn_rpc_method media_methods[] = {
  { .name = "Upload", .stream_handler = handle_upload },
  { NULL, NULL, 0 },
};

static bool
authenticate (void *data, const char *token, char user_id[64])
{
  if (!g_str_equal (token, "good-token"))
    return false;
  g_strlcpy (user_id, "user-42", 64);
  return true;
}

static void
observe (void *data, const gn_rpc_call_report *report)
{
  g_mutex_lock (&seen.lock);
  if (seen.observed < (int)G_N_ELEMENTS (seen.observed_status)) {
    seen.observed_status[seen.observed] = report->status;
    g_strlcpy (seen.observed_method[seen.observed], report->method, 32);
    g_strlcpy (seen.observed_request_id[seen.observed], report->request_id, 64);
  }
  g_assert_cmpfloat (report->queue_ms, >=, 0);
  g_assert_cmpfloat (report->handler_ms, >=, 0);
  seen.observed++;
  g_cond_broadcast (&seen.cond);
  g_mutex_unlock (&seen.lock);
}

typedef struct {
  char *dir;
  char *target;
  service_state state;
  gn_rpc_server *server;
  int port;
} fixture;

static void
fixture_start (fixture *f, const gn_rpc_server_options *options, bool tcp)
{
  g_autoptr (GError) error = NULL;
  gn_rpc_service service = {
    .descriptor = AUTH_SERVICE,
    .methods = auth_methods,
    .log_name = "auth-test",
    .data = &f->state,
  };
  gn_rpc_service media_service = {
    .descriptor = MEDIA_SERVICE,
    .methods = media_methods,
    .log_name = "media-test",
  };

  seen_reset ();
  f->dir = g_dir_make_tmp ("test-rpc-XXXXXX", &error);
  g_assert_no_error (error);
  f->server = gn_rpc_server_new (options);
  gn_rpc_server_set_authenticator (f->server, authenticate, NULL);
  gn_rpc_server_set_observer (f->server, observe, NULL);
  g_assert_true (gn_rpc_server_add_service (f->server, &service, &error));
  g_assert_no_error (error);
  g_assert_true (gn_rpc_server_add_service (f->server, &media_service, &error));
  g_assert_no_error (error);
  if (tcp) {
    g_assert_true (gn_rpc_server_listen (f->server, "127.0.0.1:0", &f->port, &error));
    g_assert_no_error (error);
    g_assert_cmpint (f->port, >, 0);
    f->target = g_strdup_printf ("127.0.0.1:%d", f->port);
  } else {
    f->target = g_strdup_printf ("unix:%s/rpc.sock", f->dir);
    g_assert_true (gn_rpc_server_listen (f->server, f->target, NULL, &error));
    g_assert_no_error (error);
  }
  f->state.target = f->target;
  f->state.label = "state-of-auth";
  g_assert_true (gn_rpc_server_start (f->server, &error));
  g_assert_no_error (error);
}

static void
fixture_stop (fixture *f)
{
  gn_rpc_server_shutdown (f->server, 1000);
  gn_rpc_server_free (f->server);
  if (g_str_has_prefix (f->target, "unix:"))
    g_unlink (f->target + strlen ("unix:"));
  g_assert_no_errno (g_rmdir (f->dir));
  g_free (f->target);
  g_free (f->dir);
}

static grpc_status_code
call_register (const char *target, const char *username, const gn_rpc_call_options *options,
               gn_arena *arena, Session **session, gn_rpc_status *status)
{
  RegisterRequest request = GENERIA__AUTH__V1__REGISTER_REQUEST__INIT;
  ProtobufCMessage *response = NULL;
  request.username = (char *)username;
  request.password = "secret-password";
  grpc_status_code code = gn_rpc_unary (gn_rpc_client_get (target), AUTH_SERVICE, "Register",
                                        &request.base, &response, arena, options, status);
  if (code != GRPC_STATUS_OK)
    g_test_message ("Register %s: %s %s", username, gn_rpc_status_name (code), status->message);
  *session = (Session *)response;
  return code;
}

static grpc_status_code
call_login (const char *target, const char *name, int sleep_ms, int timeout_ms, gn_arena *arena,
            gn_rpc_status *status)
{
  LoginRequest request = GENERIA__AUTH__V1__LOGIN_REQUEST__INIT;
  ProtobufCMessage *response = NULL;
  char sleep_text[16];
  g_snprintf (sleep_text, sizeof sleep_text, "%d", sleep_ms);
  request.email_or_username = (char *)name;
  request.password = sleep_text;
  gn_rpc_call_options options = { .timeout_ms = timeout_ms };
  grpc_status_code code = gn_rpc_unary (gn_rpc_client_get (target), AUTH_SERVICE, "Login",
                                        &request.base, &response, arena, &options, status);
  if (code == GRPC_STATUS_OK)
    g_assert_cmpstr (((Session *)response)->access_token, ==, name);
  else
    g_test_message ("Login %s: %s %s", name, gn_rpc_status_name (code), status->message);
  return code;
}

/* Waits (up to 10 s) until the observer has seen `count` calls. */
static void
wait_observed (int count)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  g_mutex_lock (&seen.lock);
  while (seen.observed < count)
    if (!g_cond_wait_until (&seen.cond, &seen.lock, end))
      break;
  g_assert_cmpint (seen.observed, >=, count);
  g_mutex_unlock (&seen.lock);
}

/* A raw gRPC core call, to see the initial metadata and to send arbitrary bytes or paths. */
typedef struct {
  grpc_status_code code;
  char *details;
  char *reason;
  char *echoed_request_id;
} raw_result;

static void
raw_result_clear (raw_result *result)
{
  g_free (result->details);
  g_free (result->reason);
  g_free (result->echoed_request_id);
}

static char *
metadata_dup (const grpc_metadata_array *metadata, const char *key)
{
  for (size_t i = 0; i < metadata->count; i++)
    if (grpc_slice_str_cmp (metadata->metadata[i].key, key) == 0)
      return g_strndup ((const char *)GRPC_SLICE_START_PTR (metadata->metadata[i].value),
                        GRPC_SLICE_LENGTH (metadata->metadata[i].value));
  return NULL;
}

static void
raw_call (const char *target, const char *path, const void *payload, size_t payload_length,
          const char *request_id, raw_result *result)
{
  grpc_channel_credentials *credentials = grpc_insecure_credentials_create ();
  grpc_channel *channel = grpc_channel_create (target, credentials, NULL);
  grpc_channel_credentials_release (credentials);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck (NULL);
  grpc_slice method = grpc_slice_from_copied_string (path);
  gpr_timespec deadline
      = gpr_time_add (gpr_now (GPR_CLOCK_MONOTONIC), gpr_time_from_millis (5000, GPR_TIMESPAN));
  grpc_call *call = grpc_channel_create_call (channel, NULL, 0, cq, method, NULL, deadline, NULL);
  grpc_slice payload_slice = grpc_slice_from_copied_buffer (payload, payload_length);
  grpc_byte_buffer *send = grpc_raw_byte_buffer_create (&payload_slice, 1);
  grpc_byte_buffer *received = NULL;
  grpc_metadata metadata = {
    .key = grpc_slice_from_static_string ("x-request-id"),
    .value = grpc_slice_from_copied_string (request_id != NULL ? request_id : ""),
  };
  grpc_metadata_array initial, trailing;
  grpc_slice details;
  grpc_op ops[6];

  grpc_metadata_array_init (&initial);
  grpc_metadata_array_init (&trailing);
  memset (ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = request_id != NULL ? 1 : 0;
  ops[0].data.send_initial_metadata.metadata = &metadata;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &received;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
  ops[5].data.recv_status_on_client.status = &result->code;
  ops[5].data.recv_status_on_client.status_details = &details;
  g_assert_cmpint (grpc_call_start_batch (call, ops, 6, ops, NULL), ==, GRPC_CALL_OK);
  grpc_event event
      = grpc_completion_queue_pluck (cq, ops, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
  g_assert_cmpint (event.type, ==, GRPC_OP_COMPLETE);
  g_assert_true (event.success);

  result->details
      = g_strndup ((const char *)GRPC_SLICE_START_PTR (details), GRPC_SLICE_LENGTH (details));
  result->reason = metadata_dup (&trailing, "x-error-code");
  result->echoed_request_id = metadata_dup (&initial, "x-request-id");

  grpc_slice_unref (details);
  grpc_slice_unref (metadata.value);
  grpc_slice_unref (payload_slice);
  grpc_slice_unref (method);
  if (received != NULL)
    grpc_byte_buffer_destroy (received);
  grpc_byte_buffer_destroy (send);
  grpc_metadata_array_destroy (&initial);
  grpc_metadata_array_destroy (&trailing);
  grpc_call_unref (call);
  grpc_completion_queue_shutdown (cq);
  while (grpc_completion_queue_pluck (cq, NULL, gpr_inf_future (GPR_CLOCK_REALTIME), NULL).type
         != GRPC_QUEUE_SHUTDOWN)
    ;
  grpc_completion_queue_destroy (cq);
  grpc_channel_destroy (channel);
}

static gboolean
send_start (gn_rpc_stream *stream, const char *filename)
{
  UploadChunk chunk = GENERIA__MEDIA__V1__UPLOAD_CHUNK__INIT;
  UploadStart start = GENERIA__MEDIA__V1__UPLOAD_START__INIT;
  start.filename = (char *)filename;
  start.content_type = "application/octet-stream";
  chunk.part_case = GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_START;
  chunk.start = &start;
  return gn_rpc_stream_send (stream, &chunk.base);
}

static gboolean
send_data (gn_rpc_stream *stream, guint8 *buffer, size_t size)
{
  UploadChunk chunk = GENERIA__MEDIA__V1__UPLOAD_CHUNK__INIT;
  chunk.part_case = GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_DATA;
  chunk.data.data = buffer;
  chunk.data.len = size;
  return gn_rpc_stream_send (stream, &chunk.base);
}

/* Tests. */

static void
test_status_names (void)
{
  g_assert_cmpstr (gn_rpc_status_name (GRPC_STATUS_OK), ==, "OK");
  g_assert_cmpstr (gn_rpc_status_name (GRPC_STATUS_NOT_FOUND), ==, "NOT_FOUND");
  g_assert_cmpstr (gn_rpc_status_name (GRPC_STATUS_RESOURCE_EXHAUSTED), ==, "RESOURCE_EXHAUSTED");
  g_assert_cmpstr (gn_rpc_status_name (GRPC_STATUS_UNAUTHENTICATED), ==, "UNAUTHENTICATED");
  for (int code = GRPC_STATUS_OK; code <= GRPC_STATUS_UNAUTHENTICATED; code++) {
    const char *name = gn_rpc_status_name ((grpc_status_code)code);
    g_assert_nonnull (name);
    g_assert_cmpstr (name, !=, "INVALID_STATUS");
    for (const char *c = name; *c != '\0'; c++)
      g_assert_true (g_ascii_isupper (*c) || *c == '_');
  }
  g_assert_cmpstr (gn_rpc_status_name ((grpc_status_code)99), ==, "INVALID_STATUS");
  g_assert_cmpstr (gn_rpc_status_name ((grpc_status_code)-1), ==, "INVALID_STATUS");
}

static void
check_round_trip (bool tcp)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  Session *session;

  fixture_start (&f, NULL, tcp);
  g_assert_cmpint (call_register (f.target, "alice", NULL, arena, &session, &status), ==,
                   GRPC_STATUS_OK);
  g_assert_cmpint (status.code, ==, GRPC_STATUS_OK);
  g_assert_cmpstr (status.message, ==, "");
  g_assert_cmpstr (status.reason, ==, "");
  g_assert_nonnull (session);
  g_assert_cmpstr (session->access_token, ==, "alice");
  g_assert_cmpint (session->access_expires_at_us, ==, strlen ("secret-password"));
  g_assert_cmpstr (session->user->display_name, ==, "Register");
  g_assert_cmpstr (session->user->bio, ==, "state-of-auth");
  /* No request id given: the server generated one. */
  g_assert_cmpuint (strlen (session->user->id), >=, 32);
  g_assert_cmpint (call_login (f.target, "bob", 0, 0, arena, &status), ==, GRPC_STATUS_OK);

  wait_observed (2);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.observed_status[0], ==, GRPC_STATUS_OK);
  g_assert_cmpstr (seen.observed_method[0], ==, "Register");
  g_assert_cmpstr (seen.observed_request_id[0], ==, session->user->id);
  g_assert_cmpstr (seen.observed_method[1], ==, "Login");
  g_mutex_unlock (&seen.lock);

  fixture_stop (&f);
  gn_arena_free (arena);
}

static void
test_round_trip_unix (void)
{
  check_round_trip (false);
}

static void
test_round_trip_tcp (void)
{
  check_round_trip (true);
}

/* Two calls in flight from one thread: both handlers run before either answer is taken. */
static void
test_unary_start_finish (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  ProtobufCMessage *response = NULL;

  fixture_start (&f, NULL, false);
  gn_rpc_client *client = gn_rpc_client_get (f.target);
  g_mutex_lock (&seen.lock);
  int started_before = seen.login_started;
  g_mutex_unlock (&seen.lock);

  LoginRequest first = GENERIA__AUTH__V1__LOGIN_REQUEST__INIT;
  first.email_or_username = "first";
  first.password = "300";
  LoginRequest second = first;
  second.email_or_username = "second";
  gn_rpc_pending *a = gn_rpc_unary_start (client, &generia__auth__v1__auth_service__descriptor,
                                          "Login", &first.base, NULL);
  gn_rpc_pending *b = gn_rpc_unary_start (client, &generia__auth__v1__auth_service__descriptor,
                                          "Login", &second.base, NULL);
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
  g_mutex_lock (&seen.lock);
  while (seen.login_started - started_before < 2)
    g_assert_true (g_cond_wait_until (&seen.cond, &seen.lock, deadline));
  g_mutex_unlock (&seen.lock);

  g_assert_cmpint (gn_rpc_unary_finish (b, &response, arena, &status), ==, GRPC_STATUS_OK);
  g_assert_cmpstr (((Session *)response)->access_token, ==, "second");
  g_assert_cmpint (gn_rpc_unary_finish (a, &response, arena, &status), ==, GRPC_STATUS_OK);
  g_assert_cmpstr (((Session *)response)->access_token, ==, "first");

  /* Refused before any call exists: finish reports it and frees the pending call. */
  gn_rpc_pending *refused = gn_rpc_unary_start (
      client, &generia__auth__v1__auth_service__descriptor, "NoSuchMethod", &first.base, NULL);
  g_assert_cmpint (gn_rpc_unary_finish (refused, &response, arena, &status), ==,
                   GRPC_STATUS_UNIMPLEMENTED);
  g_assert_null (response);
  refused = gn_rpc_unary_start (client, &generia__auth__v1__auth_service__descriptor, "Register",
                                &first.base, NULL);
  g_assert_cmpint (gn_rpc_unary_finish (refused, &response, arena, &status), ==,
                   GRPC_STATUS_INVALID_ARGUMENT);

  gn_arena_free (arena);
  fixture_stop (&f);
}

/* Missing arguments give a pending call that finishes with a clean error (it used to be half
 * built, and finish crashed on its missing completion queue). */
static void
test_unary_start_bad_arguments (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  ProtobufCMessage *response = NULL;
  LoginRequest login = GENERIA__AUTH__V1__LOGIN_REQUEST__INIT;
  const ProtobufCServiceDescriptor *auth = &generia__auth__v1__auth_service__descriptor;

  fixture_start (&f, NULL, false);
  gn_rpc_client *client = gn_rpc_client_get (f.target);
  gn_rpc_pending *calls[] = {
    gn_rpc_unary_start (NULL, auth, "Login", &login.base, NULL),
    gn_rpc_unary_start (client, NULL, "Login", &login.base, NULL),
    gn_rpc_unary_start (client, auth, NULL, &login.base, NULL),
    gn_rpc_unary_start (client, auth, "Login", NULL, NULL),
  };
  const char *missing[] = { "client", "service", "method", "request" };
  for (size_t i = 0; i < G_N_ELEMENTS (calls); i++) {
    g_assert_nonnull (calls[i]);
    response = (ProtobufCMessage *)&login;
    g_assert_cmpint (gn_rpc_unary_finish (calls[i], &response, arena, &status), ==,
                     GRPC_STATUS_INVALID_ARGUMENT);
    g_assert_null (response);
    g_assert_nonnull (strstr (status.message, missing[i]));
  }
  /* The client still works afterwards. */
  login.email_or_username = "after";
  login.password = "0";
  g_assert_cmpint (
      gn_rpc_unary (client, auth, "Login", &login.base, &response, arena, NULL, &status), ==,
      GRPC_STATUS_OK);

  gn_arena_free (arena);
  fixture_stop (&f);
}

static void
test_metadata (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  Session *session;
  raw_result raw = { 0 };

  fixture_start (&f, NULL, false);
  gn_rpc_call_options options = {
    .request_id = "req-1234",
    .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  };
  g_assert_cmpint (call_register (f.target, "carol", &options, arena, &session, &status), ==,
                   GRPC_STATUS_OK);
  g_assert_cmpstr (session->user->id, ==, "req-1234");
  g_assert_cmpstr (session->refresh_token, ==, options.traceparent);
  g_assert_cmpstr (session->user->email, ==, "");

  /* The request id comes back in the initial metadata. */
  RegisterRequest request = GENERIA__AUTH__V1__REGISTER_REQUEST__INIT;
  request.username = "dave";
  guint8 bytes[64];
  size_t length = protobuf_c_message_pack (&request.base, bytes);
  raw_call (f.target, "/generia.auth.v1.AuthService/Register", bytes, length, "req-echo-1", &raw);
  g_assert_cmpint (raw.code, ==, GRPC_STATUS_OK);
  g_assert_cmpstr (raw.echoed_request_id, ==, "req-echo-1");
  raw_result_clear (&raw);

  /* An id that could corrupt a log line is replaced by a generated one. */
  memset (&raw, 0, sizeof raw);
  raw_call (f.target, "/generia.auth.v1.AuthService/Register", bytes, length, "bad id\"x", &raw);
  g_assert_cmpint (raw.code, ==, GRPC_STATUS_OK);
  g_assert_nonnull (raw.echoed_request_id);
  g_assert_cmpstr (raw.echoed_request_id, !=, "bad id\"x");
  g_assert_cmpuint (strlen (raw.echoed_request_id), >=, 32);
  raw_result_clear (&raw);

  fixture_stop (&f);
  gn_arena_free (arena);
}

static void
test_authenticator (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  Session *session;
  Generia__Auth__V1__ValidateTokenRequest request = GENERIA__AUTH__V1__VALIDATE_TOKEN_REQUEST__INIT;
  ProtobufCMessage *response;

  fixture_start (&f, NULL, false);
  gn_rpc_client *client = gn_rpc_client_get (f.target);

  gn_rpc_call_options good = { .authorization = "Bearer good-token" };
  g_assert_cmpint (call_register (f.target, "erin", &good, arena, &session, &status), ==,
                   GRPC_STATUS_OK);
  g_assert_cmpstr (session->user->username, ==, "user-42");
  g_assert_cmpstr (session->user->email, ==, "Bearer good-token");
  g_assert_cmpint (gn_rpc_unary (client, AUTH_SERVICE, "ValidateToken", &request.base, &response,
                                 arena, &good, &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpstr (((Generia__Auth__V1__ValidateTokenResponse *)response)->user_id, ==, "user-42");

  gn_rpc_call_options bad = { .authorization = "Bearer forged" };
  g_assert_cmpint (call_register (f.target, "erin", &bad, arena, &session, &status), ==,
                   GRPC_STATUS_UNAUTHENTICATED);
  g_assert_null (session);
  g_assert_cmpstr (status.reason, ==, "invalid_token");

  /* Without a token the handler decides: this one requires a user. */
  g_assert_cmpint (gn_rpc_unary (client, AUTH_SERVICE, "ValidateToken", &request.base, &response,
                                 arena, NULL, &status),
                   ==, GRPC_STATUS_UNAUTHENTICATED);
  g_assert_cmpstr (status.message, ==, "sign-in required");
  g_assert_cmpstr (status.reason, ==, "unauthenticated");
  /* ...and this one does not. */
  g_assert_cmpint (call_register (f.target, "frank", NULL, arena, &session, &status), ==,
                   GRPC_STATUS_OK);
  g_assert_cmpstr (session->user->username, ==, "");

  fixture_stop (&f);
  gn_arena_free (arena);
}

static void
test_errors (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  Session *session;
  Generia__Auth__V1__GetUserInfoRequest info = GENERIA__AUTH__V1__GET_USER_INFO_REQUEST__INIT;
  ProtobufCMessage *response;
  raw_result raw = { 0 };

  fixture_start (&f, NULL, false);
  g_assert_cmpint (call_register (f.target, "taken", NULL, arena, &session, &status), ==,
                   GRPC_STATUS_ALREADY_EXISTS);
  g_assert_cmpint (status.code, ==, GRPC_STATUS_ALREADY_EXISTS);
  g_assert_cmpstr (status.message, ==, "username taken is already taken");
  g_assert_cmpstr (status.reason, ==, "username_taken");
  g_assert_null (session);

  /* A message quoting a huge request is cut at a character boundary, so the status still
   * arrives: in full it would pass the client's metadata limit and turn into
   * RESOURCE_EXHAUSTED. */
  GString *huge = g_string_new ("taken");
  for (int i = 0; i < 20000; i++)
    g_string_append (huge, "\xc3\xa9");
  g_assert_cmpint (call_register (f.target, huge->str, NULL, arena, &session, &status), ==,
                   GRPC_STATUS_ALREADY_EXISTS);
  g_assert_cmpstr (status.reason, ==, "username_taken");
  g_assert_true (g_str_has_prefix (status.message, "username taken\xc3\xa9"));
  g_assert_cmpuint (strlen (status.message), <=, GN_RPC_MAX_MESSAGE);
  g_assert_true (g_utf8_validate (status.message, -1, NULL));
  g_string_free (huge, TRUE);

  /* A handler that claims success without a response is an internal error, not a crash. */
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (f.target), AUTH_SERVICE, "GetUserInfo",
                                 &info.base, &response, arena, NULL, &status),
                   ==, GRPC_STATUS_INTERNAL);
  g_assert_cmpstr (status.message, ==, "internal error");

  /* Bytes that are no RegisterRequest (field 1 as a varint with a truncated value). */
  static const guint8 garbage[] = { 0x0a, 0xff, 0xff };
  raw_call (f.target, "/generia.auth.v1.AuthService/Register", garbage, sizeof garbage, NULL, &raw);
  g_assert_cmpint (raw.code, ==, GRPC_STATUS_INVALID_ARGUMENT);
  g_assert_cmpstr (raw.details, ==, "malformed request");
  g_assert_cmpstr (raw.reason, ==, "malformed_request");
  raw_result_clear (&raw);

  /* A username with a NUL inside (protobuf-c would decode "ab") and one that is not UTF-8:
   * refused before the handler, naming the field. */
  static const guint8 with_nul[] = { 0x0a, 0x05, 'a', 'b', 0x00, 'c', 'd' };
  raw_call (f.target, "/generia.auth.v1.AuthService/Register", with_nul, sizeof with_nul, NULL,
            &raw);
  g_assert_cmpint (raw.code, ==, GRPC_STATUS_INVALID_ARGUMENT);
  g_assert_cmpstr (raw.reason, ==, "nul_in_string");
  g_assert_nonnull (strstr (raw.details, "username"));
  raw_result_clear (&raw);
  static const guint8 not_utf8[] = { 0x0a, 0x03, 'a', 'b', 0xff };
  raw_call (f.target, "/generia.auth.v1.AuthService/Register", not_utf8, sizeof not_utf8, NULL,
            &raw);
  g_assert_cmpint (raw.code, ==, GRPC_STATUS_INVALID_ARGUMENT);
  g_assert_cmpstr (raw.reason, ==, "invalid_utf8");
  raw_result_clear (&raw);

  /* The client refuses a request of the wrong type before sending anything. */
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (f.target), AUTH_SERVICE, "Register", &info.base,
                                 &response, arena, NULL, &status),
                   ==, GRPC_STATUS_INVALID_ARGUMENT);

  fixture_stop (&f);
  gn_arena_free (arena);
}

static void
test_unimplemented (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  Generia__Auth__V1__LogoutRequest request = GENERIA__AUTH__V1__LOGOUT_REQUEST__INIT;
  ProtobufCMessage *response;
  raw_result raw = { 0 };

  fixture_start (&f, NULL, false);
  gint64 start = g_get_monotonic_time ();
  /* In the descriptor, but this server registered no handler for it. */
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (f.target), AUTH_SERVICE, "Logout",
                                 &request.base, &response, arena, NULL, &status),
                   ==, GRPC_STATUS_UNIMPLEMENTED);
  g_assert_cmpstr (status.message, ==, "unknown method /generia.auth.v1.AuthService/Logout");
  g_assert_cmpstr (status.reason, ==, "unknown_method");

  raw_call (f.target, "/x.Y/Z", "", 0, "req-unknown", &raw);
  g_assert_cmpint (raw.code, ==, GRPC_STATUS_UNIMPLEMENTED);
  g_assert_cmpstr (raw.details, ==, "unknown method /x.Y/Z");
  g_assert_cmpstr (raw.echoed_request_id, ==, "req-unknown");
  raw_result_clear (&raw);
  /* At once, not after the 5 s deadline. */
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_TIME_SPAN_SECOND);

  wait_observed (2);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.observed_status[0], ==, GRPC_STATUS_UNIMPLEMENTED);
  g_mutex_unlock (&seen.lock);

  /* A method the descriptor does not have never leaves the client. */
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (f.target), AUTH_SERVICE, "Nope", &request.base,
                                 &response, arena, NULL, &status),
                   ==, GRPC_STATUS_UNIMPLEMENTED);

  fixture_stop (&f);
  gn_arena_free (arena);
}

static void
test_unavailable (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-rpc-XXXXXX", &error);
  g_autofree char *target = g_strdup_printf ("unix:%s/nobody.sock", dir);
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  Session *session;

  g_assert_cmpint (call_register (target, "gina", NULL, arena, &session, &status), ==,
                   GRPC_STATUS_UNAVAILABLE);
  g_autofree char *expected = g_strdup_printf ("AuthService unavailable at %s: ", target);
  g_assert_true (g_str_has_prefix (status.message, expected));
  g_assert_cmpuint (strlen (status.message), >, strlen (expected));
  g_test_message ("unavailable: %s", status.message);

  /* A stream: its sends fail and finish says why. */
  ProtobufCMessage *response;
  gn_rpc_stream *stream
      = gn_rpc_stream_open (gn_rpc_client_get (target), MEDIA_SERVICE, "Upload", NULL);
  g_assert_false (send_start (stream, "nowhere.bin"));
  g_assert_cmpint (gn_rpc_stream_finish (stream, &response, arena, &status), ==,
                   GRPC_STATUS_UNAVAILABLE);
  g_autofree char *expected_stream = g_strdup_printf ("MediaService unavailable at %s: ", target);
  g_assert_true (g_str_has_prefix (status.message, expected_stream));

  g_assert_no_errno (g_rmdir (dir));
  gn_arena_free (arena);
}

static void
test_large_message (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  ProtobufCMessage *response;
  RegisterRequest request = GENERIA__AUTH__V1__REGISTER_REQUEST__INIT;
  size_t size = 6 * 1024 * 1024; /* over gRPC's default 4 MiB limit */
  char *password = g_malloc (size + 1);

  memset (password, 'p', size);
  password[size] = '\0';
  request.username = "big";
  request.password = password;
  fixture_start (&f, NULL, false);
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (f.target), AUTH_SERVICE, "Register",
                                 &request.base, &response, arena, NULL, &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpint (((Session *)response)->access_expires_at_us, ==, size);
  fixture_stop (&f);
  g_free (password);
  gn_arena_free (arena);
}

static void
test_deadline_exceeded (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;

  fixture_start (&f, NULL, false);
  gint64 start = g_get_monotonic_time ();
  g_assert_cmpint (call_login (f.target, "slow", 500, 100, arena, &status), ==,
                   GRPC_STATUS_DEADLINE_EXCEEDED);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 450 * 1000);

  /* The handler still finishes; the observer records that the client was gone by then. */
  wait_observed (1);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.observed_status[0], ==, GRPC_STATUS_DEADLINE_EXCEEDED);
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
  gn_arena_free (arena);
}

typedef struct {
  const char *target;
  const char *name;
  int sleep_ms;
  int timeout_ms;
  grpc_status_code code;
  char message[256];
} login_job;

static gpointer
login_thread (gpointer data)
{
  login_job *job = data;
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  job->code = call_login (job->target, job->name, job->sleep_ms, job->timeout_ms, arena, &status);
  g_strlcpy (job->message, status.message, sizeof job->message);
  gn_arena_free (arena);
  return NULL;
}

static void
wait_login_started (int count)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  g_mutex_lock (&seen.lock);
  while (seen.login_started < count)
    if (!g_cond_wait_until (&seen.cond, &seen.lock, end))
      break;
  g_assert_cmpint (seen.login_started, >=, count);
  g_mutex_unlock (&seen.lock);
}

/* One worker busy for 600 ms; a call queued behind it with a 150 ms timeout must not run. */
static void
test_deadline_queued_call_skipped (void)
{
  fixture f = { 0 };
  gn_rpc_server_options options = { .workers = 1 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;

  fixture_start (&f, &options, false);
  login_job slow = { .target = f.target, .name = "slow", .sleep_ms = 600, .timeout_ms = 5000 };
  GThread *thread = g_thread_new ("slow", login_thread, &slow);
  wait_login_started (1);
  g_assert_cmpint (call_login (f.target, "queued", 0, 150, arena, &status), ==,
                   GRPC_STATUS_DEADLINE_EXCEEDED);
  g_thread_join (thread);
  g_assert_cmpint (slow.code, ==, GRPC_STATUS_OK);

  wait_observed (2);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.login_started, ==, 1);
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
  gn_arena_free (arena);
}

/* RefreshToken calls Login (2 s) with itself as parent; the client gives it 300 ms. */
static void
test_deadline_propagated (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  Generia__Auth__V1__RefreshTokenRequest request = GENERIA__AUTH__V1__REFRESH_TOKEN_REQUEST__INIT;
  ProtobufCMessage *response;
  gn_rpc_call_options options = { .timeout_ms = 300, .request_id = "parent-req" };

  fixture_start (&f, NULL, false);
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (f.target), AUTH_SERVICE, "RefreshToken",
                                 &request.base, &response, arena, &options, &status),
                   ==, GRPC_STATUS_DEADLINE_EXCEEDED);

  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  g_mutex_lock (&seen.lock);
  while (!seen.nested_done)
    if (!g_cond_wait_until (&seen.cond, &seen.lock, end))
      break;
  g_assert_true (seen.nested_done);
  g_assert_cmpint (seen.nested_code, ==, GRPC_STATUS_DEADLINE_EXCEEDED);
  g_assert_cmpint (seen.nested_ms, <, 1000);
  g_mutex_unlock (&seen.lock);

  /* The nested call carried the parent's request id. */
  wait_observed (2);
  g_mutex_lock (&seen.lock);
  for (int i = 0; i < 2; i++)
    g_assert_cmpstr (seen.observed_request_id[i], ==, "parent-req");
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
  gn_arena_free (arena);
}

static void
test_queue_full (void)
{
  fixture f = { 0 };
  gn_rpc_server_options options = { .workers = 1, .queue_max = 1 };
  login_job jobs[5];
  GThread *threads[G_N_ELEMENTS (jobs)];
  int ok = 0, exhausted = 0;

  fixture_start (&f, &options, false);
  for (size_t i = 0; i < G_N_ELEMENTS (jobs); i++) {
    jobs[i]
        = (login_job){ .target = f.target, .name = "busy", .sleep_ms = 800, .timeout_ms = 10000 };
    threads[i] = g_thread_new ("login", login_thread, &jobs[i]);
  }
  for (size_t i = 0; i < G_N_ELEMENTS (jobs); i++) {
    g_thread_join (threads[i]);
    if (jobs[i].code == GRPC_STATUS_OK)
      ok++;
    else if (jobs[i].code == GRPC_STATUS_RESOURCE_EXHAUSTED) {
      g_assert_cmpstr (jobs[i].message, ==, "server overloaded, try again later");
      exhausted++;
    }
  }
  /* One running and one waiting at most at any time: with five calls arriving together some
   * are turned away, and every call got one of the two answers. */
  g_assert_cmpint (ok, >=, 1);
  g_assert_cmpint (exhausted, >=, 1);
  g_assert_cmpint (ok + exhausted, ==, G_N_ELEMENTS (jobs));
  fixture_stop (&f);
}

typedef struct {
  const char *target;
  int index;
  int failures;
} concurrent_job;

static gpointer
concurrent_thread (gpointer data)
{
  concurrent_job *job = data;
  gn_arena *arena = gn_arena_new ();

  for (int i = 0; i < 40; i++) {
    gn_rpc_status status;
    Session *session;
    char name[32];
    char request_id[32];
    g_snprintf (name, sizeof name, "user-%d-%d", job->index, i);
    g_snprintf (request_id, sizeof request_id, "req-%d-%d", job->index, i);
    gn_rpc_call_options options = { .request_id = request_id };
    if (i % 2 == 0) {
      if (call_register (job->target, name, &options, arena, &session, &status) != GRPC_STATUS_OK
          || !g_str_equal (session->access_token, name)
          || !g_str_equal (session->user->id, request_id))
        job->failures++;
    } else if (call_login (job->target, name, 0, 0, arena, &status) != GRPC_STATUS_OK)
      job->failures++;
    gn_arena_reset (arena);
  }
  gn_arena_free (arena);
  return NULL;
}

static void
check_concurrent (bool tcp)
{
  fixture f = { 0 };
  concurrent_job jobs[8];
  GThread *threads[G_N_ELEMENTS (jobs)];

  fixture_start (&f, NULL, tcp);
  for (size_t i = 0; i < G_N_ELEMENTS (jobs); i++) {
    jobs[i] = (concurrent_job){ .target = f.target, .index = (int)i };
    threads[i] = g_thread_new ("client", concurrent_thread, &jobs[i]);
  }
  for (size_t i = 0; i < G_N_ELEMENTS (jobs); i++) {
    g_thread_join (threads[i]);
    g_assert_cmpint (jobs[i].failures, ==, 0);
  }
  wait_observed (8 * 40);
  fixture_stop (&f);
}

static void
test_concurrent_unix (void)
{
  check_concurrent (false);
}

static void
test_concurrent_tcp (void)
{
  check_concurrent (true);
}

/* Shutdown with two handlers running and two calls queued: it waits the grace period, cancels,
 * lets the running handlers end, and every client gets an answer. */
static void
test_shutdown_in_flight (void)
{
  fixture f = { 0 };
  gn_rpc_server_options options = { .workers = 2 };
  login_job jobs[4];
  GThread *threads[G_N_ELEMENTS (jobs)];

  fixture_start (&f, &options, false);
  for (size_t i = 0; i < G_N_ELEMENTS (jobs); i++) {
    jobs[i] = (login_job){
      .target = f.target, .name = "inflight", .sleep_ms = 700, .timeout_ms = 10000
    };
    threads[i] = g_thread_new ("login", login_thread, &jobs[i]);
  }
  wait_login_started (2);
  g_usleep (50 * 1000); /* let the other two reach the queue */

  gint64 start = g_get_monotonic_time ();
  gn_rpc_server_shutdown (f.server, 100);
  gint64 shutdown_ms = (g_get_monotonic_time () - start) / 1000;
  g_test_message ("shutdown took %" G_GINT64_FORMAT " ms", shutdown_ms);
  g_assert_cmpint (shutdown_ms, <, 5000);

  int ok = 0;
  for (size_t i = 0; i < G_N_ELEMENTS (jobs); i++) {
    g_thread_join (threads[i]);
    g_test_message ("in-flight call %zu: %s %s", i, gn_rpc_status_name (jobs[i].code),
                    jobs[i].message);
    if (jobs[i].code == GRPC_STATUS_OK)
      ok++;
    else
      g_assert_true (jobs[i].code == GRPC_STATUS_CANCELLED
                     || jobs[i].code == GRPC_STATUS_UNAVAILABLE);
  }
  /* The queued calls never ran. */
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.login_started, ==, 2);
  g_assert_cmpint (seen.login_finished, ==, 2);
  g_mutex_unlock (&seen.lock);
  g_assert_cmpint (ok, <=, 2);
  fixture_stop (&f); /* a second shutdown is a no-op */
}

static void
test_add_service_unknown_method (void)
{
  static const gn_rpc_method methods[] = {
    { "Register", handle_register, 0 },
    { "Regster", handle_register, 0 },
    { NULL, NULL, 0 },
  };
  gn_rpc_service service = { .descriptor = AUTH_SERVICE, .methods = methods, .log_name = "x" };
  g_autoptr (GError) error = NULL;
  gn_rpc_server *server = gn_rpc_server_new (NULL);

  g_assert_false (gn_rpc_server_add_service (server, &service, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "Regster"));
  g_clear_error (&error);

  /* A method has exactly one kind of handler. */
  static const gn_rpc_method both[] = {
    { .name = "Upload", .handler = handle_register, .stream_handler = handle_upload },
    { NULL, NULL, 0 },
  };
  gn_rpc_service media = { .descriptor = MEDIA_SERVICE, .methods = both, .log_name = "x" };
  g_assert_false (gn_rpc_server_add_service (server, &media, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  gn_rpc_server_free (server);
}

/* With SO_REUSEPORT off a second server cannot take a port that is in use. */
static void
test_listen_port_taken (void)
{
  fixture f = { 0 };
  g_autoptr (GError) error = NULL;

  fixture_start (&f, NULL, true);
  gn_rpc_server *second = gn_rpc_server_new (NULL);
  g_autofree char *address = g_strdup_printf ("127.0.0.1:%d", f.port);
  g_assert_false (gn_rpc_server_listen (second, address, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
  gn_rpc_server_free (second);
  fixture_stop (&f);
}

/* Client streaming. */

/* A recognisable pattern per part, so that a lost, repeated or reordered part changes the hash. */
static void
fill_part (guint8 *buffer, size_t size, int index)
{
  guint32 *words = (guint32 *)buffer;
  for (size_t i = 0; i < size / sizeof *words; i++)
    words[i] = (guint32)index * 2654435761u + (guint32)i;
}

typedef struct {
  const char *target;
  const char *filename;
  int parts;
  size_t part_size;
  gn_rpc_call_options options;
  /* Results. */
  int parts_sent;
  grpc_status_code code;
  gn_rpc_status status;
  char checksum[65];
  char media_id[65];
  char media_user_id[64];
  char media_request_id[64];
  int64_t media_bytes;
  int media_parts;
} upload_job;

/* Opens an Upload stream, sends the start part and `parts` data parts, and finishes. */
static void
run_upload (upload_job *job)
{
  gn_arena *arena = gn_arena_new ();
  guint8 *buffer = g_malloc (job->part_size);
  GChecksum *checksum = g_checksum_new (G_CHECKSUM_SHA256);
  ProtobufCMessage *response;

  gn_rpc_stream *stream = gn_rpc_stream_open (gn_rpc_client_get (job->target), MEDIA_SERVICE,
                                              "Upload", &job->options);
  g_assert_nonnull (stream);
  job->parts_sent = 0;
  if (send_start (stream, job->filename))
    for (int i = 0; i < job->parts; i++) {
      fill_part (buffer, job->part_size, i);
      g_checksum_update (checksum, buffer, (gssize)job->part_size);
      if (!send_data (stream, buffer, job->part_size))
        break;
      job->parts_sent++;
    }
  job->code = gn_rpc_stream_finish (stream, &response, arena, &job->status);
  g_strlcpy (job->checksum, g_checksum_get_string (checksum), sizeof job->checksum);
  if (job->code == GRPC_STATUS_OK) {
    const Media *media = (const Media *)response;
    g_strlcpy (job->media_id, media->id, sizeof job->media_id);
    g_strlcpy (job->media_user_id, media->user_id, sizeof job->media_user_id);
    g_strlcpy (job->media_request_id, media->content_type, sizeof job->media_request_id);
    job->media_bytes = media->duration_ms;
    job->media_parts = media->width;
  }
  g_checksum_free (checksum);
  g_free (buffer);
  gn_arena_free (arena);
}

static gpointer
upload_thread (gpointer data)
{
  run_upload (data);
  return NULL;
}

static void
wait_seen_uploads (int finished, int parts)
{
  gint64 end = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;
  g_mutex_lock (&seen.lock);
  while (seen.uploads_finished < finished || seen.upload_parts < parts)
    if (!g_cond_wait_until (&seen.cond, &seen.lock, end))
      break;
  g_assert_cmpint (seen.uploads_finished, >=, finished);
  g_assert_cmpint (seen.upload_parts, >=, parts);
  g_mutex_unlock (&seen.lock);
}

/* "VmHWM:" or "VmRSS:" of this process, in KiB. */
static long
proc_status_kib (const char *field)
{
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents ("/proc/self/status", &text, NULL, NULL));
  const char *line = strstr (text, field);
  g_assert_nonnull (line);
  return strtol (line + strlen (field), NULL, 10);
}

/* Under valgrind or AddressSanitizer (quarantine, shadow memory) the process's memory is the
 * tool's, not ours: memory bounds are then not measured. */
static bool
under_valgrind (void)
{
#ifdef __SANITIZE_ADDRESS__
  return true;
#else
  const char *preload = g_getenv ("LD_PRELOAD");
  return preload != NULL && strstr (preload, "vgpreload") != NULL;
#endif
}

/* 50 MiB in 1 MiB parts arrive complete and in order, and neither side buffers the stream: the
 * peak RSS of this process (server and client both) grows far less than the stream's size. */
static void
test_stream_large (void)
{
  fixture f = { 0 };
  upload_job job = { .filename = "large.bin", .parts = 50, .part_size = MIB };

  fixture_start (&f, NULL, false);
  job.target = f.target;
  job.options.timeout_ms = 120000;
  /* Resets VmHWM to the current RSS (Linux >= 4.0), so earlier tests' peaks do not hide ours. */
  FILE *clear_refs = fopen ("/proc/self/clear_refs", "w");
  g_assert_nonnull (clear_refs);
  g_assert_cmpint (fputs ("5", clear_refs), >=, 0);
  g_assert_cmpint (fclose (clear_refs), ==, 0);
  long baseline_kib = proc_status_kib ("VmRSS:");
  gint64 start = g_get_monotonic_time ();
  run_upload (&job);
  double seconds = (double)(g_get_monotonic_time () - start) / G_USEC_PER_SEC;
  long growth_kib = proc_status_kib ("VmHWM:") - baseline_kib;

  g_test_message ("50 MiB stream: %.2f s (%.0f MiB/s), peak RSS growth %ld KiB", seconds,
                  50 / seconds, growth_kib);
  g_assert_cmpint (job.code, ==, GRPC_STATUS_OK);
  g_assert_cmpint (job.parts_sent, ==, 50);
  g_assert_cmpint (job.media_parts, ==, 50);
  g_assert_cmpint (job.media_bytes, ==, 50 * MIB);
  g_assert_cmpstr (job.media_id, ==, job.checksum);
  if (!under_valgrind ())
    g_assert_cmpint (growth_kib, <, 20 * 1024);

  wait_observed (1);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.observed_status[0], ==, GRPC_STATUS_OK);
  g_assert_cmpstr (seen.observed_method[0], ==, "Upload");
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
}

static void
test_stream_empty (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  ProtobufCMessage *response;

  fixture_start (&f, NULL, false);
  gn_rpc_stream *stream
      = gn_rpc_stream_open (gn_rpc_client_get (f.target), MEDIA_SERVICE, "Upload", NULL);
  g_assert_cmpint (gn_rpc_stream_finish (stream, &response, arena, &status), ==,
                   GRPC_STATUS_INVALID_ARGUMENT);
  g_assert_null (response);
  g_assert_cmpstr (status.message, ==, "empty upload");
  g_assert_cmpstr (status.reason, ==, "empty_upload");
  wait_seen_uploads (1, 0);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.upload_last_next, ==, 0);
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
  gn_arena_free (arena);
}

/* The handler refuses after the first message, at once or while the client waits for flow
 * control to let its next part through; either way the client learns it at once. */
static void
check_stream_refused (const char *filename)
{
  fixture f = { 0 };
  upload_job job = { .filename = filename, .parts = 50, .part_size = MIB };

  fixture_start (&f, NULL, false);
  job.target = f.target;
  job.options.timeout_ms = 30000;
  gint64 start = g_get_monotonic_time ();
  run_upload (&job);
  gint64 elapsed_ms = (g_get_monotonic_time () - start) / 1000;
  g_test_message ("%s: refused after %d of 50 parts were sent, in %" G_GINT64_FORMAT " ms",
                  filename, job.parts_sent, elapsed_ms);
  g_assert_cmpint (job.code, ==, GRPC_STATUS_PERMISSION_DENIED);
  g_autofree char *message = g_strdup_printf ("uploads named %s are refused", filename);
  g_assert_cmpstr (job.status.message, ==, message);
  g_assert_cmpstr (job.status.reason, ==, "upload_refused");
  g_assert_cmpint (job.parts_sent, <, 50);
  g_assert_cmpint (elapsed_ms, <, 1000);

  wait_observed (1);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.observed_status[0], ==, GRPC_STATUS_PERMISSION_DENIED);
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
}

static void
test_stream_refused (void)
{
  check_stream_refused ("refuse");
}

static void
test_stream_refused_late (void)
{
  check_stream_refused ("refuse-late");
}

/* The client abandons a stream mid-way: the handler's next read fails and the call is
 * reported as CANCELLED. */
static void
test_stream_cancel (void)
{
  fixture f = { 0 };
  guint8 *buffer = g_malloc0 (64 * 1024);

  fixture_start (&f, NULL, false);
  gn_rpc_stream *stream
      = gn_rpc_stream_open (gn_rpc_client_get (f.target), MEDIA_SERVICE, "Upload", NULL);
  g_assert_true (send_start (stream, "cancelled.bin"));
  g_assert_true (send_data (stream, buffer, 64 * 1024));
  g_assert_true (send_data (stream, buffer, 64 * 1024));
  wait_seen_uploads (0, 2);
  gn_rpc_stream_cancel (stream);

  wait_seen_uploads (1, 2);
  wait_observed (1);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.upload_last_next, ==, -1);
  g_assert_cmpint (seen.observed_status[0], ==, GRPC_STATUS_CANCELLED);
  g_assert_cmpstr (seen.observed_method[0], ==, "Upload");
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
  g_free (buffer);
}

/* The deadline passes while the handler waits for the next part. */
static void
test_stream_deadline (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  ProtobufCMessage *response;
  guint8 buffer[1024] = { 0 };
  gn_rpc_call_options options = { .timeout_ms = 300 };

  fixture_start (&f, NULL, false);
  gn_rpc_stream *stream
      = gn_rpc_stream_open (gn_rpc_client_get (f.target), MEDIA_SERVICE, "Upload", &options);
  g_assert_true (send_start (stream, "slow.bin"));
  g_assert_true (send_data (stream, buffer, sizeof buffer));
  wait_seen_uploads (0, 1);
  g_usleep (600 * 1000);
  g_assert_false (send_data (stream, buffer, sizeof buffer));
  g_assert_cmpint (gn_rpc_stream_finish (stream, &response, arena, &status), ==,
                   GRPC_STATUS_DEADLINE_EXCEEDED);

  wait_seen_uploads (1, 1);
  wait_observed (1);
  /* The client's deadline timer usually ends the call first, with an RST_STREAM the server
   * cannot tell from a cancel; it says DEADLINE_EXCEEDED when its own deadline (the client's
   * plus the first headers' transit) has passed by then too.  On a slow run (valgrind) it may
   * not have. */
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.upload_last_next, ==, -1);
  g_test_message ("observed: %s", gn_rpc_status_name (seen.observed_status[0]));
  g_assert_true (seen.observed_status[0] == GRPC_STATUS_DEADLINE_EXCEEDED
                 || seen.observed_status[0] == GRPC_STATUS_CANCELLED);
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
  gn_arena_free (arena);
}

/* A raw client-streaming call: sends each message in turn (ignoring refusals), half-closes and
 * reports the status. */
static void
raw_stream_call (const char *target, const char *path, GBytes **messages, size_t count,
                 raw_result *result)
{
  grpc_channel_credentials *credentials = grpc_insecure_credentials_create ();
  grpc_channel *channel = grpc_channel_create (target, credentials, NULL);
  grpc_channel_credentials_release (credentials);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck (NULL);
  grpc_slice method = grpc_slice_from_copied_string (path);
  gpr_timespec deadline
      = gpr_time_add (gpr_now (GPR_CLOCK_MONOTONIC), gpr_time_from_millis (5000, GPR_TIMESPAN));
  grpc_call *call = grpc_channel_create_call (channel, NULL, 0, cq, method, NULL, deadline, NULL);
  grpc_metadata_array initial, trailing;
  grpc_slice details;
  grpc_byte_buffer *received = NULL;
  grpc_op ops[3];
  int answer_tag, send_tag;

  grpc_metadata_array_init (&initial);
  grpc_metadata_array_init (&trailing);
  memset (ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[0].data.recv_initial_metadata.recv_initial_metadata = &initial;
  ops[1].op = GRPC_OP_RECV_MESSAGE;
  ops[1].data.recv_message.recv_message = &received;
  ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[2].data.recv_status_on_client.trailing_metadata = &trailing;
  ops[2].data.recv_status_on_client.status = &result->code;
  ops[2].data.recv_status_on_client.status_details = &details;
  g_assert_cmpint (grpc_call_start_batch (call, ops, 3, &answer_tag, NULL), ==, GRPC_CALL_OK);

  memset (ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  g_assert_cmpint (grpc_call_start_batch (call, ops, 1, &send_tag, NULL), ==, GRPC_CALL_OK);
  grpc_completion_queue_pluck (cq, &send_tag, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
  for (size_t i = 0; i < count; i++) {
    gsize size;
    const void *data = g_bytes_get_data (messages[i], &size);
    grpc_slice slice = grpc_slice_from_copied_buffer (data, size);
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create (&slice, 1);
    grpc_slice_unref (slice);
    memset (ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_MESSAGE;
    ops[0].data.send_message.send_message = buffer;
    g_assert_cmpint (grpc_call_start_batch (call, ops, 1, &send_tag, NULL), ==, GRPC_CALL_OK);
    grpc_completion_queue_pluck (cq, &send_tag, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
    grpc_byte_buffer_destroy (buffer);
  }
  memset (ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  g_assert_cmpint (grpc_call_start_batch (call, ops, 1, &send_tag, NULL), ==, GRPC_CALL_OK);
  grpc_completion_queue_pluck (cq, &send_tag, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
  grpc_event event
      = grpc_completion_queue_pluck (cq, &answer_tag, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
  g_assert_cmpint (event.type, ==, GRPC_OP_COMPLETE);

  result->details
      = g_strndup ((const char *)GRPC_SLICE_START_PTR (details), GRPC_SLICE_LENGTH (details));
  result->reason = metadata_dup (&trailing, "x-error-code");
  result->echoed_request_id = metadata_dup (&initial, "x-request-id");

  grpc_slice_unref (details);
  grpc_slice_unref (method);
  if (received != NULL)
    grpc_byte_buffer_destroy (received);
  grpc_metadata_array_destroy (&initial);
  grpc_metadata_array_destroy (&trailing);
  grpc_call_unref (call);
  grpc_completion_queue_shutdown (cq);
  while (grpc_completion_queue_pluck (cq, NULL, gpr_inf_future (GPR_CLOCK_REALTIME), NULL).type
         != GRPC_QUEUE_SHUTDOWN)
    ;
  grpc_completion_queue_destroy (cq);
  grpc_channel_destroy (channel);
}

static GBytes *
pack_bytes (const ProtobufCMessage *message)
{
  size_t size = protobuf_c_message_get_packed_size (message);
  guint8 *data = g_malloc (size + 1);
  protobuf_c_message_pack (message, data);
  return g_bytes_new_take (data, size);
}

/* A part that does not decode, after a good one: INVALID_ARGUMENT, and the handler's next read
 * fails instead of handing it garbage. */
static void
test_stream_malformed (void)
{
  fixture f = { 0 };
  raw_result raw = { 0 };
  UploadChunk chunk = GENERIA__MEDIA__V1__UPLOAD_CHUNK__INIT;
  UploadStart start = GENERIA__MEDIA__V1__UPLOAD_START__INIT;
  /* Field 2 (data) with a length that runs past the end. */
  static const guint8 garbage[] = { 0x12, 0xff, 0xff, 0x01 };

  start.filename = "malformed.bin";
  chunk.part_case = GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_START;
  chunk.start = &start;
  GBytes *messages[] = { pack_bytes (&chunk.base), g_bytes_new_static (garbage, sizeof garbage) };

  fixture_start (&f, NULL, false);
  raw_stream_call (f.target, "/generia.media.v1.MediaService/Upload", messages,
                   G_N_ELEMENTS (messages), &raw);
  g_assert_cmpint (raw.code, ==, GRPC_STATUS_INVALID_ARGUMENT);
  g_assert_cmpstr (raw.details, ==, "malformed request");
  g_assert_cmpstr (raw.reason, ==, "malformed_request");
  g_assert_nonnull (raw.echoed_request_id);
  raw_result_clear (&raw);

  wait_seen_uploads (1, 0);
  wait_observed (1);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.upload_last_next, ==, -1);
  g_assert_cmpint (seen.observed_status[0], ==, GRPC_STATUS_INVALID_ARGUMENT);
  g_mutex_unlock (&seen.lock);
  fixture_stop (&f);
  for (size_t i = 0; i < G_N_ELEMENTS (messages); i++)
    g_bytes_unref (messages[i]);
}

/* Streams and unary calls at once, over one shared channel. */
static void
test_stream_concurrent (void)
{
  fixture f = { 0 };
  upload_job uploads[6];
  concurrent_job unary[4];
  GThread *upload_threads[G_N_ELEMENTS (uploads)];
  GThread *unary_threads[G_N_ELEMENTS (unary)];

  fixture_start (&f, NULL, false);
  for (size_t i = 0; i < G_N_ELEMENTS (uploads); i++) {
    uploads[i] = (upload_job){
      .target = f.target, .filename = "concurrent.bin", .parts = 8 + (int)i, .part_size = 256 * 1024
    };
    uploads[i].options.timeout_ms = 30000;
    upload_threads[i] = g_thread_new ("upload", upload_thread, &uploads[i]);
  }
  for (size_t i = 0; i < G_N_ELEMENTS (unary); i++) {
    unary[i] = (concurrent_job){ .target = f.target, .index = (int)i };
    unary_threads[i] = g_thread_new ("client", concurrent_thread, &unary[i]);
  }
  for (size_t i = 0; i < G_N_ELEMENTS (uploads); i++) {
    g_thread_join (upload_threads[i]);
    g_assert_cmpint (uploads[i].code, ==, GRPC_STATUS_OK);
    g_assert_cmpint (uploads[i].media_parts, ==, uploads[i].parts);
    g_assert_cmpstr (uploads[i].media_id, ==, uploads[i].checksum);
  }
  for (size_t i = 0; i < G_N_ELEMENTS (unary); i++) {
    g_thread_join (unary_threads[i]);
    g_assert_cmpint (unary[i].failures, ==, 0);
  }
  wait_observed (G_N_ELEMENTS (uploads) + G_N_ELEMENTS (unary) * 40);
  fixture_stop (&f);
}

/* Request id and bearer token reach a stream's handler; a forged token is refused before the
 * handler runs; the client refuses what it cannot send. */
static void
test_stream_metadata (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  ProtobufCMessage *response;
  upload_job job = { .filename = "mine.bin", .parts = 2, .part_size = 1024 };

  fixture_start (&f, NULL, false);
  job.target = f.target;
  job.options.request_id = "req-stream-1";
  job.options.authorization = "Bearer good-token";
  run_upload (&job);
  g_assert_cmpint (job.code, ==, GRPC_STATUS_OK);
  g_assert_cmpstr (job.media_user_id, ==, "user-42");
  g_assert_cmpstr (job.media_request_id, ==, "req-stream-1");

  job.options.authorization = "Bearer forged";
  run_upload (&job);
  g_assert_cmpint (job.code, ==, GRPC_STATUS_UNAUTHENTICATED);
  g_assert_cmpstr (job.status.reason, ==, "invalid_token");

  wait_observed (2);
  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.uploads_started, ==, 1);
  g_assert_cmpstr (seen.observed_request_id[0], ==, "req-stream-1");
  g_assert_cmpstr (seen.observed_request_id[1], ==, "req-stream-1");
  g_mutex_unlock (&seen.lock);

  /* A method the descriptor does not have, and a message of the wrong type, never leave. */
  gn_rpc_client *client = gn_rpc_client_get (f.target);
  gn_rpc_stream *stream = gn_rpc_stream_open (client, MEDIA_SERVICE, "Download", NULL);
  g_assert_false (send_start (stream, "x"));
  g_assert_cmpint (gn_rpc_stream_finish (stream, &response, arena, &status), ==,
                   GRPC_STATUS_UNIMPLEMENTED);
  g_assert_cmpstr (status.message, ==, "generia.media.v1.MediaService has no method Download");

  RegisterRequest wrong = GENERIA__AUTH__V1__REGISTER_REQUEST__INIT;
  stream = gn_rpc_stream_open (client, MEDIA_SERVICE, "Upload", NULL);
  g_assert_false (gn_rpc_stream_send (stream, &wrong.base));
  g_assert_cmpint (gn_rpc_stream_finish (stream, &response, arena, &status), ==,
                   GRPC_STATUS_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (status.message, "takes generia.media.v1.UploadChunk"));

  /* Cancelling a stream that sent nothing yet. */
  gn_rpc_stream_cancel (gn_rpc_stream_open (client, MEDIA_SERVICE, "Upload", NULL));
  fixture_stop (&f);
  gn_arena_free (arena);
}

/* Shutdown with a stream in flight: the handler's read fails, the server stops within the
 * grace period plus a little, and the client is told. */
static void
test_stream_shutdown (void)
{
  fixture f = { 0 };
  gn_arena *arena = gn_arena_new ();
  gn_rpc_status status;
  ProtobufCMessage *response;
  guint8 buffer[4096] = { 0 };
  gn_rpc_call_options options = { .timeout_ms = 30000 };

  fixture_start (&f, NULL, false);
  gn_rpc_stream *stream
      = gn_rpc_stream_open (gn_rpc_client_get (f.target), MEDIA_SERVICE, "Upload", &options);
  g_assert_true (send_start (stream, "inflight.bin"));
  g_assert_true (send_data (stream, buffer, sizeof buffer));
  wait_seen_uploads (0, 1);

  gint64 start = g_get_monotonic_time ();
  gn_rpc_server_shutdown (f.server, 100);
  gint64 shutdown_ms = (g_get_monotonic_time () - start) / 1000;
  g_test_message ("shutdown with a stream in flight took %" G_GINT64_FORMAT " ms", shutdown_ms);
  g_assert_cmpint (shutdown_ms, <, 5000);

  g_mutex_lock (&seen.lock);
  g_assert_cmpint (seen.uploads_finished, ==, 1);
  g_assert_cmpint (seen.upload_last_next, ==, -1);
  g_mutex_unlock (&seen.lock);

  g_assert_false (send_data (stream, buffer, sizeof buffer));
  grpc_status_code code = gn_rpc_stream_finish (stream, &response, arena, &status);
  g_test_message ("stream after shutdown: %s %s", gn_rpc_status_name (code), status.message);
  g_assert_true (code == GRPC_STATUS_CANCELLED || code == GRPC_STATUS_UNAVAILABLE);
  fixture_stop (&f);
  gn_arena_free (arena);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  grpc_init (); /* for the raw calls */

  g_test_add_func ("/rpc/status-names", test_status_names);
  g_test_add_func ("/rpc/round-trip/unix", test_round_trip_unix);
  g_test_add_func ("/rpc/round-trip/tcp", test_round_trip_tcp);
  g_test_add_func ("/rpc/unary-start-finish", test_unary_start_finish);
  g_test_add_func ("/rpc/unary-start-bad-arguments", test_unary_start_bad_arguments);
  g_test_add_func ("/rpc/metadata", test_metadata);
  g_test_add_func ("/rpc/authenticator", test_authenticator);
  g_test_add_func ("/rpc/errors", test_errors);
  g_test_add_func ("/rpc/unimplemented", test_unimplemented);
  g_test_add_func ("/rpc/unavailable", test_unavailable);
  g_test_add_func ("/rpc/large-message", test_large_message);
  g_test_add_func ("/rpc/deadline/exceeded", test_deadline_exceeded);
  g_test_add_func ("/rpc/deadline/queued-call-skipped", test_deadline_queued_call_skipped);
  g_test_add_func ("/rpc/deadline/propagated", test_deadline_propagated);
  g_test_add_func ("/rpc/queue-full", test_queue_full);
  g_test_add_func ("/rpc/concurrent/unix", test_concurrent_unix);
  g_test_add_func ("/rpc/concurrent/tcp", test_concurrent_tcp);
  g_test_add_func ("/rpc/shutdown-in-flight", test_shutdown_in_flight);
  g_test_add_func ("/rpc/add-service-unknown-method", test_add_service_unknown_method);
  g_test_add_func ("/rpc/listen-port-taken", test_listen_port_taken);
  g_test_add_func ("/rpc/stream/large", test_stream_large);
  g_test_add_func ("/rpc/stream/empty", test_stream_empty);
  g_test_add_func ("/rpc/stream/refused", test_stream_refused);
  g_test_add_func ("/rpc/stream/refused-late", test_stream_refused_late);
  g_test_add_func ("/rpc/stream/cancel", test_stream_cancel);
  g_test_add_func ("/rpc/stream/deadline", test_stream_deadline);
  g_test_add_func ("/rpc/stream/malformed", test_stream_malformed);
  g_test_add_func ("/rpc/stream/concurrent", test_stream_concurrent);
  g_test_add_func ("/rpc/stream/metadata", test_stream_metadata);
  g_test_add_func ("/rpc/stream/shutdown", test_stream_shutdown);

  int status = g_test_run ();
  gn_rpc_clients_shutdown ();
  grpc_shutdown_blocking ();
  return status;
}
