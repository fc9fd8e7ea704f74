/* http.c - the HTTP listener shared by the gateway and the CDN, on libmicrohttpd (see http.h).
 *
 * This file is the request's life, the answers and the server's start and stop; where a client
 * comes from is in http-address.c, the connection caps and header timeout in http-guard.c, the
 * worker pool in http-pool.c, and what they share in http-private.h.
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
 * The worker pool (blocking_handlers).  libmicrohttpd 0.9.75 wants MHD_queue_response called
 * from the access handler on the event thread, so a request crosses to a worker and back:
 *
 *   event thread   last call: MHD_suspend_connection, the request queued (phase HANDLER);
 *                  the thread goes on with other connections.  A full queue: 503 at once.
 *   worker         runs the handler; its gn_http_respond_*() builds the response and holds
 *                  it in the context (hold_answer); phase HANDLER_DONE; MHD_resume_connection.
 *   event thread   libmicrohttpd repeats the last call: the held response is queued.
 *
 * A route's precheck goes the same way from the first call (phase PRECHECK): libmicrohttpd
 * repeats the first call after the resume, which then goes on as after an inline precheck
 * (its refusal, the limit it may have lowered, where the body goes), before any body byte is
 * read.  The phase lives in the context and tells the repeated calls apart.  Only suspended
 * connections are ever touched by a worker, and only the worker touches them meanwhile.
 *
 * Stopping: no more accepts (quiesce), queued jobs answered 503 and resumed, then a wait of up
 * to stop_grace_ms for requests in progress.  libmicrohttpd aborts if stopped with a connection
 * suspended, so a handler still running at the deadline leaves the server running to the
 * process's exit (gn_http_server_stop returns false) rather than making the stop wait.
 *
 * Every answer goes out through queue_response(), which adds X-Request-Id, the CORS headers for
 * an allowed Origin and any headers set with gn_http_add_header(), so no path can forget them.
 *
 * Errors are plain text ("message\n") unless the client's Accept names
 * application/problem+json; the problem document is written by hand with gn_http_json_quote()
 * (cheaper than json-glib on hot error paths such as 401s, and tested with hostile input). */
#include "http-private.h"
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

  if (context->hold_answer) {
    context->held = response;
    context->held_status = status;
    return;
  }
  if (MHD_queue_response (request->connection, (unsigned)status, response) != MHD_YES) {
    gn_error ("cannot queue the %d answer to %s %s", status, request->method, request->path);
    context->queue_failed = true;
  }
  MHD_destroy_response (response);
}

/* Queues the answer a hook gave while answers were held (if any). */
static void
release_held_answer (request_context *context)
{
  struct MHD_Response *response = context->held;

  context->hold_answer = false;
  if (response == NULL)
    return;
  context->held = NULL;
  if (MHD_queue_response (context->request.connection, (unsigned)context->held_status, response)
      != MHD_YES) {
    gn_error ("cannot queue the %d answer to %s %s", context->held_status, context->request.method,
              context->request.path);
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

void
http_respond_error_message (gn_http_request *request, int status, const char *code,
                            const char *message)
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
  http_respond_error_message (request, status, code, message);
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
void
http_discard_spool (request_context *context)
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

/* RFC 2046 allows 1 to 70 characters; libmicrohttpd would take any length. */
#define MULTIPART_BOUNDARY_MAX 70

/* The length of the boundary parameter of a multipart Content-Type (quotes excluded), 0 if
 * there is none. */
static size_t
multipart_boundary_length (const char *content_type)
{
  for (const char *p = content_type; *p != '\0'; p++) {
    if (g_ascii_strncasecmp (p, "boundary=", 9) != 0
        || (p != content_type && p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t'))
      continue;
    p += 9;
    if (*p == '"') {
      const char *end = strchr (p + 1, '"');
      return end != NULL ? (size_t)(end - p - 1) : strlen (p + 1);
    }
    return strcspn (p, "; \t");
  }
  return 0;
}

/* Non-file form fields are small (a type, a caption): their total is capped. */
#define FORM_FIELDS_MAX (64 * 1024)
/* The file part's name and type go to the media service as strings. */
#define FORM_FILE_NAME_MAX 1024
#define FORM_FILE_TYPE_MAX 255

/* A name or type from a part's headers: UTF-8 without control characters, at most max bytes. */
static bool
form_text_ok (const char *text, size_t max)
{
  size_t len = text != NULL ? strnlen (text, max + 1) : 0;

  if (len > max || !g_utf8_validate (text != NULL ? text : "", (gssize)len, NULL))
    return false;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
      return false;
  return true;
}

/* A field's value so far is text: no NUL, and valid UTF-8 except for a sequence the next piece
 * may complete (gn_http_form_field checks the whole value once more). */
static bool
form_value_ok (const GString *value)
{
  const char *end = NULL;

  if (memchr (value->str, '\0', value->len) != NULL)
    return false;
  if (g_utf8_validate (value->str, (gssize)value->len, &end))
    return true;
  return g_utf8_get_char_validated (end, (gssize)(value->str + value->len - end)) == (gunichar)-2;
}

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
      if (!form_text_ok (filename, FORM_FILE_NAME_MAX)
          || !form_text_ok (content_type, FORM_FILE_TYPE_MAX)) {
        set_pending (context, 400, "invalid_filename",
                     "The file's name and type must be UTF-8 text without control characters");
        return MHD_YES;
      }
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
  if (!form_value_ok (field->value))
    set_pending (context, 400, "invalid_text",
                 gn_arena_printf (request->arena,
                                  "The form field %s must be UTF-8 text without NUL bytes", key));
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
      return g_utf8_validate (field->value->str, (gssize)field->value->len, NULL)
                 ? field->value->str
                 : NULL;
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
    http_discard_spool (context);
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

/* A hook answered before the body was read.  The body is never stored.  A small body
 * (declared, at most HOOK_DISCARD_MAX) is read and thrown away, and the answer waits for the
 * final call, so the client reads it and the connection stays open.  A client that waits for
 * "100 Continue", or that is about to send more, gets the answer now: libmicrohttpd then
 * closes the connection instead of reading the body. */
#define HOOK_DISCARD_MAX (1024 * 1024)

enum MHD_Result
http_answered_before_body (request_context *context)
{
  gn_http_request *request = &context->request;
  const char *expect = gn_http_header (request, MHD_HTTP_HEADER_EXPECT);

  if (request->status == 0) {
    gn_error ("a hook of %s %s refused without answering", request->method, request->path);
    http_respond_error_message (request, 500, "internal_error", "Internal error");
  }
  if (!context->has_body
      || (expect == NULL && context->content_length >= 0
          && context->content_length <= HOOK_DISCARD_MAX))
    return MHD_YES;
  release_held_answer (context);
  return context->queue_failed ? MHD_NO : MHD_YES;
}

/* 413 for a declared Content-Length over the limit, at once: the connection closes rather
 * than reading a body we would throw away. */
static enum MHD_Result
refuse_declared_length (request_context *context)
{
  gn_http_request *request = &context->request;

  context->pending_status = 0;
  context->headers = NULL;
  context->headers_tail = &context->headers;
  http_respond_error_message (
      request, 413, "payload_too_large",
      gn_arena_printf (request->arena, "The request body is larger than the limit of %zu bytes",
                       context->limit));
  return context->queue_failed ? MHD_NO : MHD_YES;
}

void
gn_http_set_body_limit (gn_http_request *request, size_t limit)
{
  request_context *context = context_of (request);

  if (limit < context->limit)
    context->limit = limit;
}

/* ---- the request's life ---- */

/* After the precheck, if any: its refusal, the body limit it may have lowered, then where the
 * body will go. */
static enum MHD_Result
prepare_body (request_context *context)
{
  gn_http_request *request = &context->request;

  context->phase = PHASE_BODY;
  if (context->precheck_refused)
    return http_answered_before_body (context);
  if (context->content_length > 0 && (guint64)context->content_length > context->limit)
    return refuse_declared_length (context);
  if (context->content_length > 0) {
    if (request->route->flags & GN_ROUTE_RAW_BODY
        && (size_t)context->content_length > context->server->spool_threshold) {
      open_spool (context);
    } else {
      context->buffer_size = (size_t)context->content_length + 1;
      context->buffer = gn_arena_alloc (request->arena, context->buffer_size);
    }
  }
  return MHD_YES;
}

static enum MHD_Result
start_request (request_context *context, struct MHD_Connection *connection, const char *method)
{
  gn_http_request *request = &context->request;
  gn_http_server *server = context->server;
  const char *header, *query;
  gn_route_result result;

  context->phase = PHASE_BODY;
  context->content_length = -1;
  request->connection = connection;
  request->method = method;
  http_connection_in_request (server, connection, true);

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
  http_resolve_client (context);
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
    context->content_length = g_ascii_strtoll (header, NULL, 10);
    context->has_body = context->content_length > 0;
  }
  header = gn_http_header (request, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  if (header != NULL && g_ascii_strcasecmp (header, "identity") != 0)
    context->has_body = true;

  if (context->content_length > 0 && (guint64)context->content_length > context->limit)
    return refuse_declared_length (context);
  if (context->pending_status != 0 || context->preflight)
    return MHD_YES;

  check_bearer_token (context);
  if (context->pending_status != 0)
    return MHD_YES;

  if (server->admit != NULL) {
    context->hold_answer = true;
    bool admitted = server->admit (server->admit_data, request);
    if (!admitted || request->status != 0)
      return http_answered_before_body (context);
    context->hold_answer = false;
  }

  if (request->route->flags & GN_ROUTE_MULTIPART) {
    const char *type = gn_http_header (request, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type == NULL || !ascii_has_prefix_nocase (type, "multipart/form-data")) {
      set_pending (context, 415, "unsupported_media_type",
                   "The request body must be multipart/form-data");
      return MHD_YES;
    }
    if (multipart_boundary_length (type) > MULTIPART_BOUNDARY_MAX) {
      set_pending (context, 400, "invalid_multipart",
                   "The multipart/form-data boundary is longer than 70 characters");
      return MHD_YES;
    }
    context->form = MHD_create_post_processor (connection, 64 * 1024, form_iterator, context);
    if (context->form == NULL)
      set_pending (context, 400, "invalid_multipart",
                   "The multipart/form-data body has no usable boundary");
    return MHD_YES;
  }

  if (context->has_body && !(request->route->flags & GN_ROUTE_RAW_BODY)
      && !content_type_is_json (gn_http_header (request, MHD_HTTP_HEADER_CONTENT_TYPE))) {
    set_pending (context, 415, "unsupported_media_type", "The request body must be JSON");
    return MHD_YES;
  }

  if (request->route->precheck != NULL) {
    /* It may block (a call to the service that can judge an upload URL). */
    if (server->workers != NULL)
      return http_submit (context, PHASE_PRECHECK);
    http_run_precheck (context);
  }
  return prepare_body (context);
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
    http_discard_spool (context);
  if (context->spool_fd >= 0) {
    close (context->spool_fd);
    context->spool_fd = -1;
  }

  if (request->status != 0) { /* answered before the body: 413, or a hook's answer */
    release_held_answer (context);
    return context->queue_failed ? MHD_NO : MHD_YES;
  }
  if (context->pending_status != 0) {
    http_respond_error_message (request, context->pending_status, context->pending_code,
                                context->pending_message);
  } else if (context->preflight) {
    respond_preflight (context);
  } else {
    if (request->spool_path == NULL && context->buffer != NULL) {
      context->buffer[request->body_len] = '\0';
      request->body = context->buffer;
    }
    if (context->server->workers != NULL)
      return http_submit (context, PHASE_HANDLER);
    http_run_handler (context);
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
  switch (context->phase) {
    case PHASE_NEW:
      return start_request (context, connection, method);
    case PHASE_PRECHECK_DONE: /* libmicrohttpd repeats the first call after the resume */
      http_back_from_pool (context);
      gn_log_set_service (context->server->name);
      gn_log_set_request_id (context->request.request_id);
      return prepare_body (context);
    case PHASE_HANDLER_DONE: /* and the final call */
      http_back_from_pool (context);
      release_held_answer (context);
      return context->queue_failed ? MHD_NO : MHD_YES;
    case PHASE_PRECHECK:
    case PHASE_HANDLER: /* not called while suspended */
      return MHD_YES;
    case PHASE_BODY:
      break;
  }

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
  g_atomic_int_inc (&context->server->active_requests);
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

  http_back_from_pool (context);
  if (context->phase != PHASE_NEW)
    http_connection_in_request (server, connection, false);
  http_discard_spool (context);
  free_form (context);
  if (context->held != NULL) {
    MHD_destroy_response (context->held);
    context->held = NULL;
  }

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
  g_atomic_int_dec_and_test (&server->active_requests);
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

/* At most this many libmicrohttpd warnings a second: under a flood of connections it would
 * write one line per refused connection.  The reaper reports how many were dropped. */
#define MHD_LOG_PER_SECOND 10

static void
mhd_logger (void *cls, const char *fmt, va_list ap)
{
  gn_http_server *server = cls;
  size_t len;

  if (server != NULL && g_atomic_int_add (&server->mhd_log_lines, 1) >= MHD_LOG_PER_SECOND) {
    g_atomic_int_inc (&server->mhd_log_dropped);
    return;
  }
  vsnprintf (last_mhd_error, sizeof last_mhd_error, fmt, ap);
  len = strlen (last_mhd_error);
  while (len > 0 && (last_mhd_error[len - 1] == '\n' || last_mhd_error[len - 1] == ' '))
    last_mhd_error[--len] = '\0';
  gn_warn ("libmicrohttpd: %s", last_mhd_error);
}

/* ---- the server ---- */

static void
stop_threads (gn_http_server *server)
{
  if (server->reaper != NULL) {
    g_mutex_lock (&server->reaper_lock);
    server->reaper_stop = true;
    g_cond_signal (&server->reaper_wake);
    g_mutex_unlock (&server->reaper_lock);
    g_thread_join (server->reaper);
    server->reaper = NULL;
  }
  if (server->workers != NULL) {
    g_mutex_lock (&server->pool_lock);
    server->stopping = true;
    g_cond_broadcast (&server->pool_wake);
    g_mutex_unlock (&server->pool_lock);
    for (unsigned i = 0; i < server->n_workers; i++)
      if (server->workers[i] != NULL)
        g_thread_join (server->workers[i]);
    g_clear_pointer (&server->workers, g_free);
  }
}

static void
server_free (gn_http_server *server)
{
  g_free (server->name);
  g_free (server->spool_dir);
  g_strfreev (server->cors_origins);
  g_free (server->public_url);
  if (server->trusted_proxies != NULL)
    g_ptr_array_unref (server->trusted_proxies);
  g_hash_table_unref (server->per_ip);
  g_mutex_clear (&server->pool_lock);
  g_cond_clear (&server->pool_wake);
  g_mutex_clear (&server->connections_lock);
  g_mutex_clear (&server->reaper_lock);
  g_cond_clear (&server->reaper_wake);
  g_free (server);
}

/* Raises the soft limit on open files to the hard one (once per process) and returns how many
 * connections fit under it, leaving FD_RESERVE descriptors for everything else. */
static unsigned
connections_allowed_by_fd_limit (const char *name, unsigned wanted)
{
  static gsize raised = 0;
  struct rlimit limit;
  rlim_t usable;

  if (getrlimit (RLIMIT_NOFILE, &limit) != 0)
    return wanted;
  if (g_once_init_enter (&raised)) {
    if (limit.rlim_cur < limit.rlim_max) {
      rlim_t old = limit.rlim_cur;

      limit.rlim_cur = limit.rlim_max;
      if (setrlimit (RLIMIT_NOFILE, &limit) == 0)
        gn_info ("raised the open file limit from %llu to %llu", (unsigned long long)old,
                 (unsigned long long)limit.rlim_cur);
      else
        getrlimit (RLIMIT_NOFILE, &limit);
    }
    g_once_init_leave (&raised, 1);
  }
  usable = limit.rlim_cur > 2 * FD_RESERVE ? limit.rlim_cur - FD_RESERVE : limit.rlim_cur / 2;
  if ((rlim_t)wanted <= usable)
    return wanted;
  gn_warn ("%s: at most %llu connections instead of %u: the process may open %llu files "
           "(raise the hard limit, e.g. LimitNOFILE=, to allow more)",
           name, (unsigned long long)usable, wanted, (unsigned long long)limit.rlim_cur);
  return (unsigned)usable;
}

gn_http_server *
gn_http_server_start (const gn_http_server_options *options, GError **error)
{
  gn_http_server *server;
  const char *address = options->address != NULL ? options->address : "0.0.0.0";
  g_autoptr (GInetAddress) inet = NULL;
  g_autoptr (GSocketAddress) socket_address = NULL;
  struct sockaddr_storage native;
  unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC;
  unsigned cores = g_get_num_processors ();
  unsigned threads;
  unsigned connection_limit
      = options->max_connections > 0 ? (unsigned)options->max_connections : DEFAULT_MAX_CONNECTIONS;
  unsigned timeout = options->connection_timeout_s > 0 ? (unsigned)options->connection_timeout_s
                                                       : DEFAULT_CONNECTION_TIMEOUT_S;
  unsigned header_timeout = options->header_timeout_s > 0 ? (unsigned)options->header_timeout_s
                                                          : DEFAULT_HEADER_TIMEOUT_S;

  g_return_val_if_fail (options->router != NULL, NULL);
  g_return_val_if_fail (options->port >= 0 && options->port <= 65535, NULL);

  /* Connections are held by epoll event threads, whatever their number.  Handlers that wait on
   * an upstream call (the gateway's gRPC calls) run on the worker pool, so that the event
   * threads never wait; handlers that never wait (the CDN's sendfile) run inline, which saves
   * the two thread hand-offs. */
  if (options->threads > 0)
    threads = (unsigned)options->threads;
  else
    threads = options->blocking_handlers ? cores : 2 * cores;
  if (options->blocking_handlers)
    flags |= MHD_ALLOW_SUSPEND_RESUME;

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
  server->admit = options->admit;
  server->admit_data = options->admit_data;
  server->queue_max = options->queue_max > 0 ? (unsigned)options->queue_max : DEFAULT_QUEUE_MAX;
  server->stop_grace_ms
      = options->stop_grace_ms > 0 ? options->stop_grace_ms : DEFAULT_STOP_GRACE_MS;
  server->max_per_ip = options->max_connections_per_ip > 0
                           ? (unsigned)options->max_connections_per_ip
                           : DEFAULT_MAX_CONNECTIONS_PER_IP;
  server->header_timeout_us = (gint64)header_timeout * G_USEC_PER_SEC;
  server->per_ip = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_init (&server->pool_lock);
  g_cond_init (&server->pool_wake);
  g_queue_init (&server->jobs);
  g_mutex_init (&server->connections_lock);
  g_mutex_init (&server->reaper_lock);
  g_cond_init (&server->reaper_wake);
  if (options->public_url != NULL && options->public_url[0] != '\0') {
    server->public_url = g_strdup (options->public_url);
    while (g_str_has_suffix (server->public_url, "/"))
      server->public_url[strlen (server->public_url) - 1] = '\0';
  }
  if (options->trusted_proxies != NULL && options->trusted_proxies[0] != '\0') {
    g_auto (GStrv) blocks = g_strsplit (options->trusted_proxies, ",", -1);

    server->trusted_proxies = g_ptr_array_new_with_free_func (g_object_unref);
    for (char **block = blocks; *block != NULL; block++) {
      GInetAddressMask *mask;

      if (g_strstrip (*block)[0] == '\0')
        continue;
      mask = g_inet_address_mask_new_from_string (*block, error);
      if (mask == NULL) {
        g_prefix_error (error, "trusted proxies: ");
        server_free (server);
        return NULL;
      }
      g_ptr_array_add (server->trusted_proxies, mask);
    }
  }
  connection_limit = connections_allowed_by_fd_limit (server->name, connection_limit);

  last_mhd_error[0] = '\0';
  /* One option per line reads better than what clang-format would make of it. */
  /* clang-format off */
  server->daemon = MHD_start_daemon (
      flags, (uint16_t) options->port, http_accept_policy, server, access_handler, server,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, server,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &native,
      MHD_OPTION_THREAD_POOL_SIZE, threads,
      MHD_OPTION_CONNECTION_LIMIT, connection_limit,
      MHD_OPTION_CONNECTION_TIMEOUT, timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY_LIMIT,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned) LISTEN_BACKLOG,
      MHD_OPTION_URI_LOG_CALLBACK, uri_log_callback, server,
      MHD_OPTION_NOTIFY_COMPLETED, request_completed, server,
      MHD_OPTION_NOTIFY_CONNECTION, http_notify_connection, server,
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

  server->reaper = g_thread_new ("http-reaper", http_reaper_main, server);
  if (options->blocking_handlers) {
    server->n_workers = options->workers > 0 ? (unsigned)options->workers : 4 * cores;
    server->workers = g_new0 (GThread *, server->n_workers);
    for (unsigned i = 0; i < server->n_workers; i++)
      server->workers[i] = g_thread_new ("http-worker", http_worker_main, server);
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

/* Answers every queued job with 503 and hands its connection back to the event threads. */
static void
drop_queued_jobs (gn_http_server *server)
{
  GQueue dropped = G_QUEUE_INIT;
  GList *link;

  g_mutex_lock (&server->pool_lock);
  server->stopping = true;
  while ((link = g_queue_pop_head_link (&server->jobs)) != NULL)
    g_queue_push_tail_link (&dropped, link);
  g_cond_broadcast (&server->pool_wake);
  g_mutex_unlock (&server->pool_lock);

  while ((link = g_queue_pop_head_link (&dropped)) != NULL) {
    request_context *context = link->data;

    context->hold_answer = true;
    http_refuse_busy (context);
    if (context->phase == PHASE_PRECHECK) {
      context->precheck_refused = true;
      context->phase = PHASE_PRECHECK_DONE;
    } else {
      context->phase = PHASE_HANDLER_DONE;
    }
    MHD_resume_connection (context->request.connection);
  }
}

bool
gn_http_server_stop (gn_http_server *server)
{
  gint64 deadline;
  MHD_socket listener;
  int left;

  if (server == NULL)
    return true;
  deadline = g_get_monotonic_time () + (gint64)server->stop_grace_ms * 1000;

  /* No new connections; requests already begun get until the deadline to be answered. */
  listener = MHD_quiesce_daemon (server->daemon);
  if (listener != MHD_INVALID_SOCKET)
    close (listener);
  if (server->workers != NULL)
    drop_queued_jobs (server);
  while (
      (g_atomic_int_get (&server->in_pool) > 0 || g_atomic_int_get (&server->active_requests) > 0)
      && g_get_monotonic_time () < deadline)
    g_usleep (10 * 1000);

  /* A connection still suspended for a handler cannot be closed under it (libmicrohttpd aborts
   * when stopped with suspended connections): the server is left to the process's exit. */
  left = g_atomic_int_get (&server->in_pool);
  if (left > 0) {
    gn_log_set_service (server->name);
    gn_error ("%d handlers still running %d ms after the stop began: leaving them to the "
              "process's exit",
              left, server->stop_grace_ms);
    return false;
  }
  MHD_stop_daemon (server->daemon);
  stop_threads (server);
  server_free (server);
  return true;
}
