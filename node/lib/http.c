/* http.c - the HTTP listener shared by the gateway and the CDN, on libmicrohttpd (see http.h).
 *
 * Life of a request.  libmicrohttpd calls us in three places:
 *
 *   uri_log_callback      as soon as the request line is read: we create the request context
 *                         (arena, start time, the raw request target) and hand it to MHD as
 *                         the connection's per-request pointer.  The raw target matters: MHD
 *                         percent-decodes the `url` it passes to the access handler, which
 *                         would turn "%2F" inside a parameter into a path separator.
 *   access_handler        first call: the headers are in.  Everything that can be decided
 *                         without the body is decided here - request id, CORS, route, body
 *                         limit, bearer token, content type - and a refusal is parked as the
 *                         "pending" answer.  Nothing is queued on this call (MHD would then
 *                         close the connection: the keep-alive trap of notes/http-server.md)
 *                         except the 413 for a declared Content-Length over the limit, where
 *                         closing the connection is what we want so as not to read the body.
 *                         Following calls with data: the body goes into the arena, or into
 *                         a spool file for large RAW_BODY uploads, or nowhere (discarded) once
 *                         a refusal is pending or the limit is passed.
 *                         Last call (no data): the pending answer, the preflight answer or the
 *                         route's handler, which must call one gn_http_respond_*(); the spool
 *                         file is removed as soon as the handler returns.
 *   request_completed     after the answer went out (or the client went away): the access
 *                         log line, the observer, the spool file of an aborted upload removed,
 *                         the arena freed.  Note that libmicrohttpd 0.9.75's epoll loop can miss
 *                         a client's FIN that arrives together with the last body bytes; such a
 *                         connection then ends at the connection timeout, which therefore
 *                         bounds how long an aborted upload's spool file lives.
 *
 * Every answer goes out through queue_response(), which adds X-Request-Id, the CORS headers for
 * an allowed Origin and any headers set with gn_http_add_header(), so no path can forget them.
 *
 * Errors are plain text ("message\n") unless the client's Accept names
 * application/problem+json; the problem document is written by hand with gn_http_json_quote()
 * (cheaper than json-glib on hot error paths such as 401s, and tested with hostile input). */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <microhttpd.h>
#include <gio/gio.h>

#include "log.h"

#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_SPOOL_THRESHOLD (256 * 1024)
#define DEFAULT_CONNECTION_TIMEOUT_S 60
#define DEFAULT_MAX_CONNECTIONS 1024
#define CONNECTION_MEMORY_LIMIT (64 * 1024)
#define LISTEN_BACKLOG 1024
/* How far past its limit a refused body is read and thrown away, so that the client can read
 * our answer, before we give up and drop the connection (MHD 0.9.75 cannot queue an answer
 * in the middle of an upload). */
#define DISCARD_SLACK (64 * 1024 * 1024)
/* nginx's convention for "the client went away before an answer was sent". */
#define STATUS_CLIENT_CLOSED 499
#define DEFAULT_ALLOW_HEADERS "Authorization, Content-Type, Accept, X-Request-Id"

struct gn_http_server {
  struct MHD_Daemon *daemon;
  char *name;
  char *spool_dir;
  char **cors_origins; /* NULL when CORS is off */
  bool cors_any;
  size_t max_body;
  size_t spool_threshold;
  gn_router *router;
  gn_http_authenticator authenticate;
  void *auth_data;
  gn_http_observer observer;
  void *observer_data;
  void *data;
};

typedef struct response_header {
  const char *name;
  const char *value;
  struct response_header *next;
} response_header;

typedef struct form_field {
  struct form_field *next;
  char *name;
  GString *value;
} form_field;

typedef struct {
  gn_http_request request; /* first: handlers get &context->request */
  gn_http_server *server;
  gint64 start_us;
  const char *target; /* the raw request target, query included */
  bool started;
  bool preflight;
  const char *origin; /* the request's Origin when CORS allows it, else NULL */
  char allow[128];

  /* An answer decided before the body arrived, sent once it has been read. */
  int pending_status;
  const char *pending_code;
  const char *pending_message;

  size_t limit;
  size_t received;
  char *buffer; /* in the arena */
  size_t buffer_size;
  int spool_fd;
  char *spool_path; /* g_malloc'd; removed once the handler returns or the request ends */

  /* GN_ROUTE_MULTIPART */
  struct MHD_PostProcessor *form;
  form_field *fields;
  size_t fields_bytes;
  bool file_seen; /* a "file" part started (its bytes go to the spool file) */
  bool file_done; /* a later part began: further "file" parts are ignored */

  response_header *headers; /* in the order added */
  response_header **headers_tail;
  size_t bytes_out;
  bool queue_failed;
} request_context;

static _Thread_local char last_mhd_error[256];

/* ---- small helpers ---- */

static bool
ascii_has_prefix_nocase (const char *s, const char *prefix)
{
  return g_ascii_strncasecmp (s, prefix, strlen (prefix)) == 0;
}

static bool
request_id_is_sane (const char *id)
{
  size_t n = 0;

  if (id == NULL)
    return false;
  for (; id[n] != '\0'; n++) {
    char c = id[n];

    if (n == 64 || !(g_ascii_isalnum (c) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return n > 0;
}

/* Media type without parameters is application/json or application/<x>+json. */
static bool
content_type_is_json (const char *content_type)
{
  const char *end;
  size_t len;

  if (content_type == NULL)
    return false;
  while (*content_type == ' ' || *content_type == '\t')
    content_type++;
  end = strchr (content_type, ';');
  len = end ? (size_t)(end - content_type) : strlen (content_type);
  while (len > 0 && (content_type[len - 1] == ' ' || content_type[len - 1] == '\t'))
    len--;
  if (!ascii_has_prefix_nocase (content_type, "application/") || len <= strlen ("application/"))
    return false;
  if (len == strlen ("application/json")
      && ascii_has_prefix_nocase (content_type, "application/json"))
    return true;
  return len > strlen ("application/+json")
         && g_ascii_strncasecmp (content_type + len - 5, "+json", 5) == 0;
}

static bool
accept_asks_for_problem_json (const char *accept)
{
  static const char wanted[] = "application/problem+json";

  for (const char *p = accept; p != NULL && *p != '\0'; p++)
    if (g_ascii_strncasecmp (p, wanted, sizeof wanted - 1) == 0)
      return true;
  return false;
}

/* Appends value to a logfmt line, quoted and escaped when it needs to be. */
static void
append_logfmt_value (GString *line, const char *value)
{
  bool plain = value[0] != '\0';

  for (const char *p = value; *p != '\0' && plain; p++)
    plain = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != '\\' && *p != 0x7f;
  if (plain) {
    g_string_append (line, value);
    return;
  }
  g_string_append_c (line, '"');
  for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\')
      g_string_append_c (line, '\\');
    if (*p < ' ' || *p == 0x7f)
      g_string_append_printf (line, "\\x%02x", *p);
    else
      g_string_append_c (line, (char)*p);
  }
  g_string_append_c (line, '"');
}

char *
gn_http_json_quote (gn_arena *arena, const char *s)
{
  GString *out;
  const char *p;
  char *result;

  if (s == NULL)
    return gn_arena_strdup (arena, "null");

  out = g_string_sized_new (strlen (s) + 2);
  g_string_append_c (out, '"');
  for (p = s; *p != '\0';) {
    unsigned char c = (unsigned char)*p;

    if (c < 0x80) {
      switch (c) {
        case '"':
          g_string_append (out, "\\\"");
          break;
        case '\\':
          g_string_append (out, "\\\\");
          break;
        case '\n':
          g_string_append (out, "\\n");
          break;
        case '\r':
          g_string_append (out, "\\r");
          break;
        case '\t':
          g_string_append (out, "\\t");
          break;
        default:
          if (c < 0x20 || c == 0x7f)
            g_string_append_printf (out, "\\u%04x", c);
          else
            g_string_append_c (out, (char)c);
      }
      p++;
    } else {
      /* Valid UTF-8 passes through; each invalid byte becomes U+FFFD so the document stays
       * valid JSON whatever a message quoted from user input contains. */
      gunichar ch = g_utf8_get_char_validated (p, -1);

      if (ch == (gunichar)-1 || ch == (gunichar)-2) {
        g_string_append (out, "\\ufffd");
        p++;
      } else {
        const char *next = g_utf8_next_char (p);

        g_string_append_len (out, p, next - p);
        p = next;
      }
    }
  }
  g_string_append_c (out, '"');
  result = gn_arena_strndup (arena, out->str, out->len);
  g_string_free (out, TRUE);
  return result;
}

const char *
gn_http_status_title (int status)
{
  const char *phrase = status > 0 ? MHD_get_reason_phrase_for ((unsigned)status) : NULL;

  return phrase != NULL && phrase[0] != '\0' && strcmp (phrase, "Unknown") != 0 ? phrase
                                                                                : "Unknown Status";
}

/* ---- responses ---- */

static request_context *
context_of (gn_http_request *request)
{
  return (request_context *)request;
}

void
gn_http_add_header (gn_http_request *request, const char *name, const char *value)
{
  request_context *context = context_of (request);
  response_header *header = gn_arena_alloc (request->arena, sizeof *header);

  header->name = gn_arena_strdup (request->arena, name);
  header->value = gn_arena_strdup (request->arena, value);
  header->next = NULL;
  *context->headers_tail = header;
  context->headers_tail = &header->next;
}

/* Whether an answer may still be given; logs the handler bug otherwise. */
static bool
claim_answer (gn_http_request *request, int status, size_t len)
{
  if (request->status != 0) {
    gn_error ("second answer (%d) to %s %s ignored: already answered %d", status, request->method,
              request->path, request->status);
    return false;
  }
  request->status = status;
  context_of (request)->bytes_out = len;
  return true;
}

/* Adds the headers every answer carries and queues it; takes the response. */
static void
queue_response (gn_http_request *request, int status, const char *content_type,
                struct MHD_Response *response)
{
  request_context *context = context_of (request);
  bool ok = true;

  if (response == NULL) {
    context->queue_failed = true;
    return;
  }
  if (content_type != NULL)
    ok &= MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  ok &= MHD_add_response_header (response, "X-Request-Id", request->request_id);
  if (context->origin != NULL) {
    ok &= MHD_add_response_header (response, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN,
                                   context->origin);
    ok &= MHD_add_response_header (response, MHD_HTTP_HEADER_VARY, "Origin");
    if (!context->preflight)
      ok &= MHD_add_response_header (response, "Access-Control-Expose-Headers", "X-Request-Id");
  }
  for (response_header *h = context->headers; h != NULL; h = h->next)
    ok &= MHD_add_response_header (response, h->name, h->value);
  if (!ok)
    gn_warn ("a response header of %s %s was refused (invalid characters?)", request->method,
             request->path);

  if (MHD_queue_response (request->connection, (unsigned)status, response) != MHD_YES) {
    gn_error ("cannot queue the %d answer to %s %s", status, request->method, request->path);
    context->queue_failed = true;
  }
  MHD_destroy_response (response);
}

static void
respond_common (gn_http_request *request, int status, const char *content_type, const char *body,
                size_t len)
{
  if (!claim_answer (request, status, len))
    return;
  queue_response (request, status, content_type,
                  MHD_create_response_from_buffer (len, (void *)body, MHD_RESPMEM_MUST_COPY));
}

void
gn_http_respond_file (gn_http_request *request, int status, int fd, uint64_t offset,
                      uint64_t length, const char *content_type)
{
  struct MHD_Response *response;

  if (!claim_answer (request, status, (size_t)length)) {
    close (fd);
    return;
  }
  /* libmicrohttpd sends it with sendfile(2) on plain TCP and closes fd when the response is
   * destroyed, i.e. once the last byte went out or the client left. */
  response = MHD_create_response_from_fd_at_offset64 (length, fd, offset);
  if (response == NULL)
    close (fd);
  queue_response (request, status, content_type, response);
}

void
gn_http_respond (gn_http_request *request, int status, const char *content_type, const char *body,
                 size_t len)
{
  respond_common (request, status, content_type, body != NULL ? body : "", body ? len : 0);
}

void
gn_http_respond_json (gn_http_request *request, int status, const char *json, size_t len)
{
  respond_common (request, status, "application/json", json, len);
}

static void
respond_error_message (gn_http_request *request, int status, const char *code, const char *message)
{
  gn_arena *arena = request->arena;
  char *body;

  if (!request->problem_json) {
    body = gn_arena_printf (arena, "%s\n", message);
    respond_common (request, status, "text/plain; charset=utf-8", body, strlen (body));
    return;
  }
  body = gn_arena_printf (arena,
                          "{\"type\":\"about:blank\",\"title\":%s,\"status\":%d,\"detail\":%s,"
                          "\"code\":%s}",
                          gn_http_json_quote (arena, gn_http_status_title (status)), status,
                          gn_http_json_quote (arena, message), gn_http_json_quote (arena, code));
  respond_common (request, status, "application/problem+json", body, strlen (body));
}

void
gn_http_respond_error (gn_http_request *request, int status, const char *code, const char *fmt, ...)
{
  va_list ap;
  char *message;

  va_start (ap, fmt);
  message = gn_arena_vprintf (request->arena, fmt, ap);
  va_end (ap);
  respond_error_message (request, status, code, message);
}

/* ---- request accessors ---- */

const char *
gn_http_header (gn_http_request *request, const char *name)
{
  return MHD_lookup_connection_value (request->connection, MHD_HEADER_KIND, name);
}

const char *
gn_http_query (gn_http_request *request, const char *name)
{
  return MHD_lookup_connection_value (request->connection, MHD_GET_ARGUMENT_KIND, name);
}

const char *
gn_http_param (gn_http_request *request, const char *name)
{
  for (size_t i = 0; i < request->n_params; i++)
    if (strcmp (request->params[i].name, name) == 0)
      return request->params[i].value;
  return NULL;
}

/* ---- the request's life ---- */

static void
set_pending (request_context *context, int status, const char *code, const char *message)
{
  if (context->pending_status != 0)
    return;
  context->pending_status = status;
  context->pending_code = code;
  context->pending_message = message;
}

static const char *
allowed_origin (gn_http_server *server, const char *origin)
{
  if (origin == NULL || server->cors_origins == NULL)
    return NULL;
  if (server->cors_any)
    return origin;
  for (char **allowed = server->cors_origins; *allowed != NULL; allowed++)
    if (g_ascii_strcasecmp (*allowed, origin) == 0)
      return origin;
  return NULL;
}

static void
check_bearer_token (request_context *context)
{
  gn_http_request *request = &context->request;
  gn_http_server *server = context->server;
  unsigned flags = request->route->flags;
  const char *token;
  char user_id[64] = "";

  if (!(flags & (GN_ROUTE_AUTH_REQUIRED | GN_ROUTE_AUTH_OPTIONAL)))
    return;
  if (request->authorization == NULL) {
    if (flags & GN_ROUTE_AUTH_REQUIRED) {
      gn_http_add_header (request, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
      set_pending (context, 401, "unauthorized", "Sign-in required");
    }
    return;
  }

  token = request->authorization;
  if (ascii_has_prefix_nocase (token, "Bearer ")) {
    token += strlen ("Bearer ");
    while (*token == ' ')
      token++;
  } else {
    token = "";
  }
  if (token[0] != '\0' && server->authenticate != NULL
      && server->authenticate (server->auth_data, token, user_id) && user_id[0] != '\0') {
    user_id[sizeof user_id - 1] = '\0';
    request->user_id = gn_arena_strdup (request->arena, user_id);
    return;
  }
  gn_http_add_header (request, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"");
  set_pending (context, 401, "invalid_token", "The access token is invalid or has expired");
}

static bool
open_spool (request_context *context)
{
  gn_http_request *request = &context->request;

  context->spool_path
      = g_build_filename (context->server->spool_dir, "generia-upload-XXXXXX", NULL);
  context->spool_fd = g_mkstemp_full (context->spool_path, O_RDWR | O_CLOEXEC, 0600);
  if (context->spool_fd < 0) {
    gn_error ("cannot create a spool file in %s: %s", context->server->spool_dir,
              g_strerror (errno));
    g_clear_pointer (&context->spool_path, g_free);
    set_pending (context, 500, "internal_error", "Internal error");
    return false;
  }
  request->spool_path = context->spool_path;
  return true;
}

/* Closes and removes the spool file, if any: once the handler is done with it, or as soon as
 * the body is refused, so disk space never waits for the answer to finish sending. */
static void
discard_spool (request_context *context)
{
  if (context->spool_fd >= 0) {
    close (context->spool_fd);
    context->spool_fd = -1;
  }
  if (context->spool_path != NULL) {
    if (unlink (context->spool_path) != 0 && errno != ENOENT)
      gn_warn ("cannot remove the spool file %s: %s", context->spool_path, g_strerror (errno));
    g_clear_pointer (&context->spool_path, g_free);
  }
  context->request.spool_path = NULL;
}

static bool
spool_write (request_context *context, const char *data, size_t size)
{
  while (size > 0) {
    ssize_t n = write (context->spool_fd, data, size);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      gn_error ("cannot write the spool file %s: %s", context->spool_path, g_strerror (errno));
      set_pending (context, 500, "internal_error", "Internal error");
      return false;
    }
    data += n;
    size -= (size_t)n;
  }
  return true;
}

static void
buffer_append (request_context *context, const char *data, size_t size)
{
  size_t needed = context->request.body_len + size + 1;

  if (needed > context->buffer_size) {
    size_t new_size = MAX (MAX (context->buffer_size * 2, needed), 4096);
    char *grown = gn_arena_alloc (context->request.arena, MIN (new_size, context->limit + 1));

    if (context->request.body_len > 0)
      memcpy (grown, context->buffer, context->request.body_len);
    context->buffer = grown;
    context->buffer_size = MIN (new_size, context->limit + 1);
  }
  memcpy (context->buffer + context->request.body_len, data, size);
  context->request.body_len += size;
}

/* Non-file form fields are small (a type, a caption): their total is capped. */
#define FORM_FIELDS_MAX (64 * 1024)

/* libmicrohttpd's streaming multipart parser calls this for every piece of every part.  The
 * part named "file" goes to the spool file (never to memory); other fields are kept, up to
 * FORM_FIELDS_MAX bytes in all. */
static enum MHD_Result
form_iterator (void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
               const char *content_type, const char *transfer_encoding, const char *data,
               uint64_t off, size_t size)
{
  request_context *context = cls;
  gn_http_request *request = &context->request;

  if (context->pending_status != 0)
    return MHD_YES;
  /* libmicrohttpd passes a part whose Content-Disposition names no field with a NULL key. */
  if (key == NULL) {
    set_pending (context, 400, "invalid_request", "A form part has no name");
    return MHD_YES;
  }
  if (strcmp (key, "file") == 0) {
    if (context->file_done)
      return MHD_YES;
    if (!context->file_seen) {
      context->file_seen = true;
      request->upload_filename = gn_arena_strdup (request->arena, filename ? filename : "");
      request->upload_content_type
          = gn_arena_strdup (request->arena, content_type ? content_type : "");
      if (!open_spool (context))
        return MHD_NO;
    }
    if (size > 0) {
      if (!spool_write (context, data, size))
        return MHD_NO;
      request->body_len += size;
    }
    return MHD_YES;
  }
  if (context->file_seen)
    context->file_done = true;

  context->fields_bytes += strlen (key) + size;
  if (context->fields_bytes > FORM_FIELDS_MAX) {
    set_pending (context, 413, "payload_too_large", "The form fields are too large");
    return MHD_YES;
  }
  form_field *field = context->fields;
  while (field != NULL && !(strcmp (field->name, key) == 0 && off > 0))
    field = field->next;
  if (field == NULL) {
    field = gn_arena_zalloc (request->arena, sizeof *field);
    field->name = gn_arena_strdup (request->arena, key);
    field->value = g_string_new (NULL);
    field->next = context->fields;
    context->fields = field;
  }
  g_string_append_len (field->value, data, (gssize)size);
  return MHD_YES;
}

static void
free_form (request_context *context)
{
  if (context->form != NULL) {
    MHD_destroy_post_processor (context->form);
    context->form = NULL;
  }
  for (form_field *field = context->fields; field != NULL; field = field->next)
    g_string_free (field->value, TRUE);
  context->fields = NULL;
}

const char *
gn_http_form_field (gn_http_request *request, const char *name)
{
  for (form_field *field = context_of (request)->fields; field != NULL; field = field->next)
    if (strcmp (field->name, name) == 0)
      return field->value->str;
  return NULL;
}

/* Takes one piece of the body: into the buffer, the spool file or nowhere. */
static void
receive_body (request_context *context, const char *data, size_t size)
{
  gn_http_request *request = &context->request;
  const gn_route *route = request->route;

  context->received += size;
  if (context->received > context->limit && context->pending_status == 0)
    set_pending (context, 413, "payload_too_large",
                 gn_arena_printf (request->arena,
                                  "The request body is larger than the limit of %zu bytes",
                                  context->limit));
  if (context->pending_status != 0) {
    discard_spool (context);
    return;
  }

  if (context->form != NULL) {
    if (MHD_post_process (context->form, data, size) != MHD_YES && context->pending_status == 0)
      set_pending (context, 400, "invalid_multipart", "The multipart/form-data body is malformed");
    return;
  }
  if (route->flags & GN_ROUTE_RAW_BODY && context->spool_fd < 0
      && request->body_len + size > context->server->spool_threshold) {
    if (!open_spool (context) || !spool_write (context, context->buffer, request->body_len))
      return;
  }
  if (context->spool_fd < 0)
    buffer_append (context, data, size);
  else if (spool_write (context, data, size))
    request->body_len += size;
}

static void
respond_preflight (request_context *context)
{
  gn_http_request *request = &context->request;
  const char *requested_headers = gn_http_header (request, "Access-Control-Request-Headers");

  if (context->origin != NULL) {
    gn_http_add_header (request, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_METHODS, context->allow);
    gn_http_add_header (request, "Access-Control-Allow-Headers",
                        requested_headers != NULL && requested_headers[0] != '\0'
                            ? requested_headers
                            : DEFAULT_ALLOW_HEADERS);
    gn_http_add_header (request, "Access-Control-Max-Age", "600");
  }
  gn_http_respond (request, 204, NULL, NULL, 0);
}

static enum MHD_Result
start_request (request_context *context, struct MHD_Connection *connection, const char *method)
{
  gn_http_request *request = &context->request;
  gn_http_server *server = context->server;
  const char *header, *query;
  gn_route_result result;
  bool has_body = false;
  gint64 content_length = -1;

  context->started = true;
  request->connection = connection;
  request->method = method;

  header = gn_http_header (request, "X-Request-Id");
  if (request_id_is_sane (header)) {
    g_strlcpy (request->request_id, header, sizeof request->request_id);
  } else {
    g_autofree char *uuid = g_uuid_string_random ();
    g_strlcpy (request->request_id, uuid, sizeof request->request_id);
  }
  gn_log_set_service (server->name);
  gn_log_set_request_id (request->request_id);

  request->problem_json = accept_asks_for_problem_json (gn_http_header (request, "Accept"));
  request->authorization = gn_http_header (request, MHD_HTTP_HEADER_AUTHORIZATION);
  context->origin = allowed_origin (server, gn_http_header (request, "Origin"));

  query = strchr (context->target, '?');
  request->path = query
                      ? gn_arena_strndup (request->arena, context->target, query - context->target)
                      : context->target;

  if (strcmp (method, "OPTIONS") == 0
      && gn_http_header (request, "Access-Control-Request-Method") != NULL) {
    if (gn_router_allowed_methods (server->router, request->path, context->allow,
                                   sizeof context->allow))
      context->preflight = true;
    else
      set_pending (context, 404, "not_found", "Not found");
  } else {
    result = gn_router_match (server->router, method, request->path, request->arena,
                              &request->route, request->params, &request->n_params, context->allow,
                              sizeof context->allow);
    if (result == GN_ROUTE_NOT_FOUND) {
      set_pending (context, 404, "not_found", "Not found");
    } else if (result == GN_ROUTE_METHOD_NOT_ALLOWED) {
      gn_http_add_header (request, MHD_HTTP_HEADER_ALLOW, context->allow);
      set_pending (context, 405, "method_not_allowed",
                   gn_arena_printf (request->arena, "Method %s is not allowed here", method));
    }
  }

  context->limit = request->route != NULL && request->route->max_body > 0 ? request->route->max_body
                                                                          : server->max_body;
  header = gn_http_header (request, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (header != NULL) {
    content_length = g_ascii_strtoll (header, NULL, 10);
    has_body = content_length > 0;
  }
  header = gn_http_header (request, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  if (header != NULL && g_ascii_strcasecmp (header, "identity") != 0)
    has_body = true;

  if (content_length > 0 && (guint64)content_length > context->limit) {
    context->pending_status = 0;
    context->headers = NULL;
    context->headers_tail = &context->headers;
    respond_error_message (request, 413, "payload_too_large",
                           gn_arena_printf (request->arena,
                                            "The request body is larger than the limit of %zu "
                                            "bytes",
                                            context->limit));
    return context->queue_failed ? MHD_NO : MHD_YES;
  }
  if (context->pending_status != 0 || context->preflight)
    return MHD_YES;

  check_bearer_token (context);
  if (context->pending_status != 0)
    return MHD_YES;

  if (request->route->flags & GN_ROUTE_MULTIPART) {
    const char *type = gn_http_header (request, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type == NULL || !ascii_has_prefix_nocase (type, "multipart/form-data")) {
      set_pending (context, 415, "unsupported_media_type",
                   "The request body must be multipart/form-data");
      return MHD_YES;
    }
    context->form = MHD_create_post_processor (connection, 64 * 1024, form_iterator, context);
    if (context->form == NULL)
      set_pending (context, 400, "invalid_multipart",
                   "The multipart/form-data body has no usable boundary");
    return MHD_YES;
  }

  if (has_body && !(request->route->flags & GN_ROUTE_RAW_BODY)
      && !content_type_is_json (gn_http_header (request, MHD_HTTP_HEADER_CONTENT_TYPE))) {
    set_pending (context, 415, "unsupported_media_type", "The request body must be JSON");
    return MHD_YES;
  }

  if (content_length > 0) {
    if (request->route->flags & GN_ROUTE_RAW_BODY
        && (size_t)content_length > server->spool_threshold) {
      open_spool (context);
    } else {
      context->buffer_size = (size_t)content_length + 1;
      context->buffer = gn_arena_alloc (request->arena, context->buffer_size);
    }
  }
  return MHD_YES;
}

static enum MHD_Result
finish_request (request_context *context)
{
  gn_http_request *request = &context->request;

  gn_log_set_service (context->server->name);
  gn_log_set_request_id (request->request_id);

  if (context->form != NULL) {
    MHD_destroy_post_processor (context->form);
    context->form = NULL;
  }
  if (context->pending_status != 0)
    discard_spool (context);
  if (context->spool_fd >= 0) {
    close (context->spool_fd);
    context->spool_fd = -1;
  }

  if (request->status != 0) /* answered on the first call (413) */
    return MHD_YES;
  if (context->pending_status != 0) {
    respond_error_message (request, context->pending_status, context->pending_code,
                           context->pending_message);
  } else if (context->preflight) {
    respond_preflight (context);
  } else {
    if (request->spool_path == NULL && context->buffer != NULL) {
      context->buffer[request->body_len] = '\0';
      request->body = context->buffer;
    }
    request->route->handler (request, request->route->data);
    discard_spool (context);
    if (request->status == 0) {
      gn_error ("handler of %s %s answered nothing", request->method, request->route->name);
      gn_http_respond_error (request, 500, "internal_error", "Internal error");
    }
  }
  return context->queue_failed ? MHD_NO : MHD_YES;
}

static enum MHD_Result
access_handler (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                const char *version, const char *upload_data, size_t *upload_data_size,
                void **con_cls)
{
  request_context *context = *con_cls;

  if (context == NULL)
    return MHD_NO;
  if (!context->started)
    return start_request (context, connection, method);

  if (*upload_data_size > 0) {
    if (context->request.status == 0) {
      receive_body (context, upload_data, *upload_data_size);
      if (context->pending_status != 0 && context->received > context->limit + DISCARD_SLACK) {
        gn_warn ("%s %s: dropping the connection after %zu bytes of a refused body",
                 context->request.method, context->request.path, context->received);
        return MHD_NO;
      }
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  return finish_request (context);
}

static void *
uri_log_callback (void *cls, const char *uri, struct MHD_Connection *connection)
{
  gn_arena *arena = gn_arena_new ();
  request_context *context = gn_arena_zalloc (arena, sizeof *context);

  context->request.arena = arena;
  context->request.server_data = ((gn_http_server *)cls)->data;
  context->server = cls;
  context->start_us = g_get_monotonic_time ();
  context->target = gn_arena_strdup (arena, uri);
  context->request.path = context->target;
  context->spool_fd = -1;
  context->headers_tail = &context->headers;
  return context;
}

static void
request_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
                   enum MHD_RequestTerminationCode toe)
{
  request_context *context = *con_cls;
  gn_http_request *request;
  gn_http_server *server = cls;
  gn_http_report report;
  g_autoptr (GString) kv = NULL;

  if (context == NULL)
    return;
  *con_cls = NULL;
  request = &context->request;

  discard_spool (context);
  free_form (context);

  report.method = request->method != NULL ? request->method : "-";
  report.route = request->route != NULL ? request->route->name : "-";
  report.request_id = request->request_id[0] != '\0' ? request->request_id : "-";
  report.status = request->status != 0 && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
                      ? request->status
                      : STATUS_CLIENT_CLOSED;
  report.bytes_out = report.status == STATUS_CLIENT_CLOSED ? 0 : context->bytes_out;
  report.ms = (double)(g_get_monotonic_time () - context->start_us) / 1000.0;

  kv = g_string_sized_new (160);
  g_string_append (kv, "method=");
  append_logfmt_value (kv, report.method);
  g_string_append (kv, " path=");
  append_logfmt_value (kv, request->path != NULL ? request->path : "-");
  g_string_append (kv, " route=");
  append_logfmt_value (kv, report.route);
  g_string_append_printf (kv, " status=%d bytes=%zu ms=%.2f", report.status, report.bytes_out,
                          report.ms);
  gn_log_set_service (server->name);
  gn_log_set_request_id (request->request_id[0] != '\0' ? request->request_id : NULL);
  gn_log_kv (GN_LOG_INFO, kv->str, "request");
  if (server->observer != NULL)
    server->observer (server->observer_data, &report);
  gn_log_set_request_id (NULL);

  gn_arena_free (request->arena);
}

/* Query values: %XX and '+' (a space in form encoding) decoded in place.  Paths are not
 * touched by this: the router reads the raw target. */
static size_t
unescape_query (void *cls, struct MHD_Connection *connection, char *s)
{
  char *out = s;

  for (const char *in = s; *in != '\0'; in++) {
    if (*in == '+') {
      *out++ = ' ';
    } else if (*in == '%' && g_ascii_isxdigit (in[1]) && g_ascii_isxdigit (in[2])) {
      *out++ = (char)(g_ascii_xdigit_value (in[1]) << 4 | g_ascii_xdigit_value (in[2]));
      in += 2;
    } else {
      *out++ = *in;
    }
  }
  *out = '\0';
  return (size_t)(out - s);
}

static void mhd_logger (void *cls, const char *fmt, va_list ap)
    __attribute__ ((format (printf, 2, 0)));

static void
mhd_logger (void *cls, const char *fmt, va_list ap)
{
  size_t len;

  vsnprintf (last_mhd_error, sizeof last_mhd_error, fmt, ap);
  len = strlen (last_mhd_error);
  while (len > 0 && (last_mhd_error[len - 1] == '\n' || last_mhd_error[len - 1] == ' '))
    last_mhd_error[--len] = '\0';
  gn_warn ("libmicrohttpd: %s", last_mhd_error);
}

/* ---- the server ---- */

static void
server_free (gn_http_server *server)
{
  g_free (server->name);
  g_free (server->spool_dir);
  g_strfreev (server->cors_origins);
  g_free (server);
}

gn_http_server *
gn_http_server_start (const gn_http_server_options *options, GError **error)
{
  gn_http_server *server;
  const char *address = options->address != NULL ? options->address : "0.0.0.0";
  g_autoptr (GInetAddress) inet = NULL;
  g_autoptr (GSocketAddress) socket_address = NULL;
  struct sockaddr_storage native;
  unsigned flags = MHD_USE_ERROR_LOG;
  unsigned threads
      = options->threads > 0 ? (unsigned)options->threads : 2 * g_get_num_processors ();
  unsigned connection_limit
      = options->max_connections > 0 ? (unsigned)options->max_connections : DEFAULT_MAX_CONNECTIONS;

  /* Handlers that wait on an upstream call (the gateway's gRPC calls) get a thread per
   * connection: in a shared epoll pool one waiting handler would stall every other connection
   * of its thread.  Handlers that never wait (the CDN's sendfile) share the epoll pool. */
  if (options->blocking_handlers)
    flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
  else
    flags |= MHD_USE_EPOLL_INTERNAL_THREAD;
  unsigned timeout = options->connection_timeout_s > 0 ? (unsigned)options->connection_timeout_s
                                                       : DEFAULT_CONNECTION_TIMEOUT_S;

  g_return_val_if_fail (options->router != NULL, NULL);
  g_return_val_if_fail (options->port >= 0 && options->port <= 65535, NULL);

  inet = g_inet_address_new_from_string (address);
  if (inet == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "%s: not an IP address to listen on", address);
    return NULL;
  }
  socket_address = g_inet_socket_address_new (inet, (guint16)options->port);
  if (!g_socket_address_to_native (socket_address, &native, sizeof native, error))
    return NULL;
  if (g_inet_address_get_family (inet) == G_SOCKET_FAMILY_IPV6)
    flags |= MHD_USE_IPv6;

  server = g_new0 (gn_http_server, 1);
  server->name = g_strdup (options->name != NULL ? options->name : "http");
  server->spool_dir = g_strdup (options->spool_dir != NULL ? options->spool_dir : g_get_tmp_dir ());
  server->max_body = options->max_body > 0 ? options->max_body : DEFAULT_MAX_BODY;
  server->spool_threshold
      = options->spool_threshold > 0 ? options->spool_threshold : DEFAULT_SPOOL_THRESHOLD;
  if (options->cors_origins != NULL && options->cors_origins[0] != '\0') {
    server->cors_origins = g_strsplit (options->cors_origins, ",", -1);
    for (char **origin = server->cors_origins; *origin != NULL; origin++) {
      g_strstrip (*origin);
      if (strcmp (*origin, "*") == 0)
        server->cors_any = true;
    }
  }
  server->router = options->router;
  server->authenticate = options->authenticate;
  server->auth_data = options->auth_data;
  server->observer = options->observer;
  server->observer_data = options->observer_data;
  server->data = options->data;

  last_mhd_error[0] = '\0';
  /* The pool size is only given in pool mode: libmicrohttpd warns about it otherwise. */
  struct MHD_OptionItem pool[] = {
    { MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL },
    { MHD_OPTION_END, 0, NULL },
  };
  if (options->blocking_handlers)
    pool[0].option = MHD_OPTION_END;

  /* One option per line reads better than what clang-format would make of it. */
  /* clang-format off */
  server->daemon = MHD_start_daemon (
      flags, (uint16_t) options->port, NULL, NULL, access_handler, server,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &native,
      MHD_OPTION_ARRAY, pool,
      MHD_OPTION_CONNECTION_LIMIT, connection_limit,
      MHD_OPTION_CONNECTION_TIMEOUT, timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY_LIMIT,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned) LISTEN_BACKLOG,
      MHD_OPTION_URI_LOG_CALLBACK, uri_log_callback, server,
      MHD_OPTION_NOTIFY_COMPLETED, request_completed, server,
      MHD_OPTION_UNESCAPE_CALLBACK, unescape_query, NULL,
      MHD_OPTION_END);
  /* clang-format on */
  if (server->daemon == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot listen on %s port %d%s%s",
                 server->name, address, options->port, last_mhd_error[0] ? ": " : "",
                 last_mhd_error);
    server_free (server);
    return NULL;
  }
  return server;
}

int
gn_http_server_port (gn_http_server *server)
{
  const union MHD_DaemonInfo *info
      = MHD_get_daemon_info (server->daemon, MHD_DAEMON_INFO_BIND_PORT);

  return info != NULL ? info->port : -1;
}

void
gn_http_server_stop (gn_http_server *server)
{
  if (server == NULL)
    return;
  MHD_stop_daemon (server->daemon);
  server_free (server);
}
