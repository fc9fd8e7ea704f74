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
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <microhttpd.h>
#include <gio/gio.h>

#include "log.h"

#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_SPOOL_THRESHOLD (256 * 1024)
#define DEFAULT_CONNECTION_TIMEOUT_S 60
#define DEFAULT_HEADER_TIMEOUT_S 30
#define DEFAULT_MAX_CONNECTIONS 16384
#define DEFAULT_MAX_CONNECTIONS_PER_IP 256
#define DEFAULT_QUEUE_MAX 1024
#define DEFAULT_STOP_GRACE_MS 5000
/* File descriptors kept free of connections: database and Redis connections, gRPC channels,
 * spool files, log files, the other listener. */
#define FD_RESERVE 512
/* Each connection's libmicrohttpd memory: request headers (more: 431), the response's headers,
 * read and write buffers.  libmicrohttpd clears the whole of it after every request, so it is
 * also what an idle keep-alive connection costs in RSS: 16 KiB x 10,000 = 160 MiB. */
#define CONNECTION_MEMORY_LIMIT (16 * 1024)
#define LISTEN_BACKLOG 1024
/* How far past its limit a refused body is read and thrown away, so that the client can read
 * our answer, before we give up and drop the connection (MHD 0.9.75 cannot queue an answer
 * in the middle of an upload). */
#define DISCARD_SLACK (64 * 1024 * 1024)
/* nginx's convention for "the client went away before an answer was sent". */
#define STATUS_CLIENT_CLOSED 499
#define DEFAULT_ALLOW_HEADERS "Authorization, Content-Type, Accept, X-Request-Id"

typedef struct tracked_connection tracked_connection;

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
  gn_http_admit admit;
  void *admit_data;
  char *public_url;           /* without a trailing slash; NULL: from each request */
  GPtrArray *trusted_proxies; /* of GInetAddressMask; NULL when none */
  void *data;

  /* The worker pool (blocking_handlers): prechecks and handlers queued by the event threads,
   * their connections suspended meanwhile. */
  GThread **workers;
  unsigned n_workers;
  GMutex pool_lock;
  GCond pool_wake;
  GQueue jobs; /* of request_context, linked through job_link */
  unsigned queue_max;
  bool stopping;
  gint in_pool;         /* connections suspended for the pool, not yet back (atomic) */
  gint active_requests; /* requests begun and not completed (atomic) */
  int stop_grace_ms;

  /* Every open connection, for the per-address cap and the header timeout (see the reaper). */
  GMutex connections_lock;
  tracked_connection *connections;
  GHashTable *per_ip; /* address text -> number of its connections (not counting trusted ones) */
  unsigned max_per_ip;
  gint64 header_timeout_us;
  GThread *reaper;
  GMutex reaper_lock;
  GCond reaper_wake;
  bool reaper_stop;
  gint refused_per_ip;  /* since the reaper's last report (atomic) */
  gint closed_slow;     /* idem */
  gint refused_busy;    /* idem: requests refused with a full worker queue */
  gint mhd_log_lines;   /* libmicrohttpd warnings logged this second (atomic) */
  gint mhd_log_dropped; /* and those dropped beyond MHD_LOG_PER_SECOND */
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

/* Where a request is in its life; PRECHECK and HANDLER only on servers with a worker pool, whose
 * workers move the request on to PRECHECK_DONE and HANDLER_DONE before they resume it. */
typedef enum {
  PHASE_NEW,           /* the headers are not in yet */
  PHASE_PRECHECK,      /* suspended: the route's precheck is queued or running on a worker */
  PHASE_PRECHECK_DONE, /* resumed: go on as after an inline precheck */
  PHASE_BODY,          /* reading the body (if any) */
  PHASE_HANDLER,       /* suspended: the handler is queued or running on a worker */
  PHASE_HANDLER_DONE,  /* resumed: its answer waits in `held` */
} request_phase;

typedef struct {
  gn_http_request request; /* first: handlers get &context->request */
  gn_http_server *server;
  gint64 start_us;
  const char *target; /* the raw request target, query included */
  request_phase phase;
  GList job_link; /* in server->jobs while queued */
  bool in_pool;   /* counted in server->in_pool */
  bool has_body;
  gint64 content_length; /* declared, or -1 */
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

  /* While a hook runs before the body is read, its answer is held here instead of queued:
   * queued on the first call it would cost the keep-alive (see the top of this file). */
  bool hold_answer;
  struct MHD_Response *held;
  int held_status;
  bool precheck_refused;   /* the precheck answered: the body is not read */
  bool from_trusted_proxy; /* the peer is one of the server's trusted proxies */
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

/* ---- addresses: the client's, and the URL it used ---- */

static bool
address_is_trusted (gn_http_server *server, GInetAddress *address)
{
  if (server->trusted_proxies == NULL || address == NULL)
    return false;
  for (guint i = 0; i < server->trusted_proxies->len; i++)
    if (g_inet_address_mask_matches (server->trusted_proxies->pdata[i], address))
      return true;
  return false;
}

static GInetAddress *
sockaddr_to_inet (const struct sockaddr *native)
{
  gsize len;
  g_autoptr (GSocketAddress) address = NULL;

  if (native == NULL)
    return NULL;
  if (native->sa_family == AF_INET)
    len = sizeof (struct sockaddr_in);
  else if (native->sa_family == AF_INET6)
    len = sizeof (struct sockaddr_in6);
  else
    return NULL;
  address = g_socket_address_new_from_native ((gpointer)native, len);
  if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address))
    return NULL;
  return g_object_ref (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address)));
}

/* X-Forwarded-For lists the client first and each proxy's peer after it: the client is the
 * rightmost address that is not itself a trusted proxy. */
static const char *
forwarded_client (request_context *context, const char *forwarded_for)
{
  g_auto (GStrv) hops = NULL;
  const char *client = NULL;
  guint n;

  if (forwarded_for == NULL || strlen (forwarded_for) > 1024)
    return NULL;
  hops = g_strsplit (forwarded_for, ",", 32);
  n = g_strv_length (hops);
  for (guint i = n; i-- > 0;) {
    g_autoptr (GInetAddress) hop = g_inet_address_new_from_string (g_strstrip (hops[i]));

    if (hop == NULL)
      break;
    client = gn_arena_strdup (context->request.arena, hops[i]);
    if (!address_is_trusted (context->server, hop))
      break;
  }
  return client;
}

static void
resolve_client (request_context *context)
{
  gn_http_request *request = &context->request;
  const union MHD_ConnectionInfo *info
      = MHD_get_connection_info (request->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  g_autoptr (GInetAddress) peer = sockaddr_to_inet (info != NULL ? info->client_addr : NULL);
  g_autofree char *text = peer != NULL ? g_inet_address_to_string (peer) : NULL;
  const char *forwarded = NULL;

  request->client_ip = gn_arena_strdup (request->arena, text != NULL ? text : "unknown");
  context->from_trusted_proxy = address_is_trusted (context->server, peer);
  if (context->from_trusted_proxy)
    forwarded = forwarded_client (context, gn_http_header (request, "X-Forwarded-For"));
  if (forwarded != NULL)
    request->client_ip = forwarded;
}

/* A Host value we are willing to put into URLs: a name or address with an optional port. */
static bool
host_is_sane (const char *host)
{
  size_t n = 0;

  if (host == NULL)
    return false;
  for (; host[n] != '\0'; n++) {
    char c = host[n];

    if (n == 255
        || !(g_ascii_isalnum (c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
             || c == '_'))
      return false;
  }
  return n > 0;
}

/* The first element of a comma-separated header value, trimmed, from the arena. */
static char *
first_value (gn_arena *arena, const char *value)
{
  const char *end;

  if (value == NULL)
    return NULL;
  end = strchr (value, ',');
  return g_strstrip (end != NULL ? gn_arena_strndup (arena, value, (size_t)(end - value))
                                 : gn_arena_strdup (arena, value));
}

static const char *
local_host (gn_http_request *request)
{
  const union MHD_ConnectionInfo *info
      = MHD_get_connection_info (request->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  struct sockaddr_storage native;
  socklen_t len = sizeof native;
  g_autoptr (GInetAddress) address = NULL;
  g_autofree char *text = NULL;
  int port;

  if (info == NULL || getsockname (info->connect_fd, (struct sockaddr *)&native, &len) != 0)
    return "localhost";
  address = sockaddr_to_inet ((struct sockaddr *)&native);
  if (address == NULL)
    return "localhost";
  text = g_inet_address_to_string (address);
  port = native.ss_family == AF_INET6 ? ntohs (((struct sockaddr_in6 *)&native)->sin6_port)
                                      : ntohs (((struct sockaddr_in *)&native)->sin_port);
  if (g_inet_address_get_family (address) == G_SOCKET_FAMILY_IPV6)
    return gn_arena_printf (request->arena, "[%s]:%d", text, port);
  return gn_arena_printf (request->arena, "%s:%d", text, port);
}

const char *
gn_http_base_url (gn_http_request *request)
{
  request_context *context = context_of (request);
  const char *scheme = "http";
  const char *host = NULL;

  if (context->server->public_url != NULL)
    return context->server->public_url;
  if (context->from_trusted_proxy) {
    char *proto = first_value (request->arena, gn_http_header (request, "X-Forwarded-Proto"));
    char *forwarded_host
        = first_value (request->arena, gn_http_header (request, "X-Forwarded-Host"));

    if (proto != NULL && (g_ascii_strcasecmp (proto, "https") == 0))
      scheme = "https";
    if (host_is_sane (forwarded_host))
      host = forwarded_host;
  }
  if (host == NULL && host_is_sane (gn_http_header (request, MHD_HTTP_HEADER_HOST)))
    host = gn_http_header (request, MHD_HTTP_HEADER_HOST);
  if (host == NULL)
    host = local_host (request);
  return gn_arena_printf (request->arena, "%s://%s", scheme, host);
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

/* A hook answered before the body was read.  The body is never stored.  A small body
 * (declared, at most HOOK_DISCARD_MAX) is read and thrown away, and the answer waits for the
 * final call, so the client reads it and the connection stays open.  A client that waits for
 * "100 Continue", or that is about to send more, gets the answer now: libmicrohttpd then
 * closes the connection instead of reading the body. */
#define HOOK_DISCARD_MAX (1024 * 1024)

static enum MHD_Result
answered_before_body (request_context *context)
{
  gn_http_request *request = &context->request;
  const char *expect = gn_http_header (request, MHD_HTTP_HEADER_EXPECT);

  if (request->status == 0) {
    gn_error ("a hook of %s %s refused without answering", request->method, request->path);
    respond_error_message (request, 500, "internal_error", "Internal error");
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
  respond_error_message (request, 413, "payload_too_large",
                         gn_arena_printf (request->arena,
                                          "The request body is larger than the limit of %zu bytes",
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

/* ---- connections: the per-address cap and the header timeout ----
 *
 * libmicrohttpd tells us when a connection opens and closes (notify_connection); we keep each
 * in a list with its address and its state.  The accept policy refuses a connection whose
 * address already holds max_per_ip (trusted proxies are exempt: every client behind them shares
 * their address).  With several event threads, each accepting on its own, the cap can be
 * passed by at most one connection per event thread.
 *
 * libmicrohttpd's connection timeout is an inactivity timeout: a client that sends a header
 * byte every few seconds would hold its connection forever.  The reaper thread bounds the time
 * from a request's first byte to its complete headers.  Between requests a connection waits
 * (an idle keep-alive connection costs its libmicrohttpd memory and a list entry, not a
 * thread, and the inactivity timeout closes it); every header_timeout/2 the reaper reads the
 * socket's received byte count (TCP_INFO): once bytes have come in while the headers are
 * still not complete header_timeout later, it shuts the socket down, and libmicrohttpd's
 * event thread closes the connection.  Headers are therefore closed at 1 to 1.5 x header_timeout
 * after their first byte.  shutdown() from another thread is safe here because notify_connection
 * reports the close, under connections_lock, before the descriptor is closed and reused. */

struct tracked_connection {
  tracked_connection *prev, *next;
  int fd;
  char *address;      /* counted in per_ip under this key; NULL for a trusted proxy */
  bool in_request;    /* headers complete, answer not yet sent */
  bool shut;          /* the reaper shut it down */
  guint64 bytes_seen; /* bytes received when the reaper last looked, or when it began waiting */
  gint64 arriving_us; /* when the reaper first saw bytes of headers still incomplete; 0: not */
  gint64 next_check_us;
};

static guint64
bytes_received (int fd)
{
  struct tcp_info info;
  socklen_t len = sizeof info;

  memset (&info, 0, sizeof info);
  if (getsockopt (fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
    return 0;
  return info.tcpi_bytes_received;
}

/* The address of a sockaddr as text (the per_ip key), or NULL if it is not IP. */
static char *
address_key (const struct sockaddr *address, char buffer[INET6_ADDRSTRLEN])
{
  if (address == NULL)
    return NULL;
  if (address->sa_family == AF_INET)
    return (char *)inet_ntop (AF_INET, &((const struct sockaddr_in *)address)->sin_addr, buffer,
                              INET6_ADDRSTRLEN);
  if (address->sa_family == AF_INET6)
    return (char *)inet_ntop (AF_INET6, &((const struct sockaddr_in6 *)address)->sin6_addr, buffer,
                              INET6_ADDRSTRLEN);
  return NULL;
}

static bool
sockaddr_is_trusted (gn_http_server *server, const struct sockaddr *address)
{
  g_autoptr (GInetAddress) inet = NULL;

  if (server->trusted_proxies == NULL)
    return false;
  inet = sockaddr_to_inet (address);
  return address_is_trusted (server, inet);
}

static enum MHD_Result
accept_policy (void *cls, const struct sockaddr *address, socklen_t address_len)
{
  gn_http_server *server = cls;
  char buffer[INET6_ADDRSTRLEN];
  const char *key = address_key (address, buffer);
  unsigned count;

  if (key == NULL)
    return MHD_YES;
  g_mutex_lock (&server->connections_lock);
  count = GPOINTER_TO_UINT (g_hash_table_lookup (server->per_ip, key));
  g_mutex_unlock (&server->connections_lock);
  if (count < server->max_per_ip || sockaddr_is_trusted (server, address))
    return MHD_YES;
  g_atomic_int_inc (&server->refused_per_ip);
  return MHD_NO;
}

static void
notify_connection (void *cls, struct MHD_Connection *connection, void **socket_context,
                   enum MHD_ConnectionNotificationCode code)
{
  gn_http_server *server = cls;
  tracked_connection *tracked = *socket_context;

  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *fd
        = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *peer
        = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char buffer[INET6_ADDRSTRLEN];
    const char *key = address_key (peer != NULL ? peer->client_addr : NULL, buffer);

    tracked = g_new0 (tracked_connection, 1);
    tracked->fd = fd != NULL ? fd->connect_fd : -1;
    tracked->next_check_us = g_get_monotonic_time () + server->header_timeout_us / 2;
    if (key != NULL && !sockaddr_is_trusted (server, peer->client_addr))
      tracked->address = g_strdup (key);
    *socket_context = tracked;

    g_mutex_lock (&server->connections_lock);
    if (tracked->address != NULL) {
      guint count = GPOINTER_TO_UINT (g_hash_table_lookup (server->per_ip, tracked->address));
      g_hash_table_replace (server->per_ip, g_strdup (tracked->address),
                            GUINT_TO_POINTER (count + 1));
    }
    tracked->next = server->connections;
    if (server->connections != NULL)
      server->connections->prev = tracked;
    server->connections = tracked;
    g_mutex_unlock (&server->connections_lock);
    return;
  }

  if (tracked == NULL)
    return;
  *socket_context = NULL;
  g_mutex_lock (&server->connections_lock);
  if (tracked->address != NULL) {
    guint count = GPOINTER_TO_UINT (g_hash_table_lookup (server->per_ip, tracked->address));
    if (count <= 1)
      g_hash_table_remove (server->per_ip, tracked->address);
    else
      g_hash_table_replace (server->per_ip, g_strdup (tracked->address),
                            GUINT_TO_POINTER (count - 1));
  }
  if (tracked->prev != NULL)
    tracked->prev->next = tracked->next;
  else
    server->connections = tracked->next;
  if (tracked->next != NULL)
    tracked->next->prev = tracked->prev;
  g_mutex_unlock (&server->connections_lock);
  g_free (tracked->address);
  g_free (tracked);
}

/* A request's headers are complete (true), or its answer is done and the connection waits for
 * the next one (false). */
static void
connection_in_request (gn_http_server *server, struct MHD_Connection *connection, bool in_request)
{
  const union MHD_ConnectionInfo *info
      = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  tracked_connection *tracked = info != NULL ? info->socket_context : NULL;
  guint64 bytes = 0;

  if (tracked == NULL)
    return;
  if (!in_request)
    bytes = bytes_received (tracked->fd);
  g_mutex_lock (&server->connections_lock);
  tracked->in_request = in_request;
  if (!in_request) {
    tracked->bytes_seen = bytes;
    tracked->arriving_us = 0;
    tracked->next_check_us = g_get_monotonic_time () + server->header_timeout_us / 2;
  }
  g_mutex_unlock (&server->connections_lock);
}

/* Once a second: the header timeout (see above), and the counts of what was refused. */
static void
reap_slow_headers (gn_http_server *server)
{
  gint64 now = g_get_monotonic_time ();

  g_mutex_lock (&server->connections_lock);
  for (tracked_connection *c = server->connections; c != NULL; c = c->next) {
    guint64 bytes;

    if (c->in_request || c->shut || now < c->next_check_us)
      continue;
    if (c->arriving_us != 0) {
      shutdown (c->fd, SHUT_RDWR);
      c->shut = true;
      g_atomic_int_inc (&server->closed_slow);
      continue;
    }
    bytes = bytes_received (c->fd);
    if (bytes != c->bytes_seen) {
      c->arriving_us = now;
      c->next_check_us = now + server->header_timeout_us;
    } else {
      c->next_check_us = now + server->header_timeout_us / 2;
    }
    c->bytes_seen = bytes;
  }
  g_mutex_unlock (&server->connections_lock);
}

static gpointer
reaper_main (gpointer data)
{
  gn_http_server *server = data;

  g_mutex_lock (&server->reaper_lock);
  while (!server->reaper_stop) {
    gint refused, closed, dropped, busy;

    g_cond_wait_until (&server->reaper_wake, &server->reaper_lock,
                       g_get_monotonic_time () + G_USEC_PER_SEC);
    if (server->reaper_stop)
      break;
    reap_slow_headers (server);
    gn_log_set_service (server->name);
    refused = g_atomic_int_exchange (&server->refused_per_ip, 0);
    closed = g_atomic_int_exchange (&server->closed_slow, 0);
    dropped = g_atomic_int_exchange (&server->mhd_log_dropped, 0);
    busy = g_atomic_int_exchange (&server->refused_busy, 0);
    g_atomic_int_set (&server->mhd_log_lines, 0);
    if (refused > 0)
      gn_warn ("refused %d connections: their address already had %u open", refused,
               server->max_per_ip);
    if (closed > 0)
      gn_warn ("closed %d connections whose request headers took longer than %d s", closed,
               (int)(server->header_timeout_us / G_USEC_PER_SEC));
    if (busy > 0)
      gn_warn ("answered %d requests 503: %u waiting for the %u workers already", busy,
               server->queue_max, server->n_workers);
    if (dropped > 0)
      gn_warn ("libmicrohttpd: %d more warnings not logged", dropped);
  }
  g_mutex_unlock (&server->reaper_lock);
  return NULL;
}

/* ---- the worker pool ---- */

/* Runs on a worker, or inline on servers without a pool.  An answer is held (not queued). */
static void
run_precheck (request_context *context)
{
  gn_http_request *request = &context->request;

  context->hold_answer = true;
  if (request->route->precheck (request, request->route->data) && request->status == 0)
    context->hold_answer = false;
  else
    context->precheck_refused = true;
}

static void
run_handler (request_context *context)
{
  gn_http_request *request = &context->request;

  request->route->handler (request, request->route->data);
  discard_spool (context);
  if (request->status == 0) {
    gn_error ("handler of %s %s answered nothing", request->method, request->route->name);
    gn_http_respond_error (request, 500, "internal_error", "Internal error");
  }
}

static gpointer
worker_main (gpointer data)
{
  gn_http_server *server = data;

  g_mutex_lock (&server->pool_lock);
  for (;;) {
    GList *link;
    request_context *context;

    while (!server->stopping && g_queue_is_empty (&server->jobs))
      g_cond_wait (&server->pool_wake, &server->pool_lock);
    link = g_queue_pop_head_link (&server->jobs);
    if (link == NULL)
      break;
    g_mutex_unlock (&server->pool_lock);

    context = link->data;
    gn_log_set_service (server->name);
    gn_log_set_request_id (context->request.request_id);
    if (context->phase == PHASE_PRECHECK) {
      run_precheck (context);
      context->phase = PHASE_PRECHECK_DONE;
    } else {
      context->hold_answer = true;
      run_handler (context);
      context->phase = PHASE_HANDLER_DONE;
    }
    gn_log_set_request_id (NULL);
    /* The event thread takes the connection back and, in the access handler, the request on
     * from the phase set above (the resume's lock orders these writes before its reads). */
    MHD_resume_connection (context->request.connection);

    g_mutex_lock (&server->pool_lock);
  }
  g_mutex_unlock (&server->pool_lock);
  return NULL;
}

static void
refuse_busy (request_context *context)
{
  gn_http_add_header (&context->request, "Retry-After", "1");
  respond_error_message (&context->request, 503, "overloaded",
                         context->server->stopping ? "The server is shutting down"
                                                   : "The server is busy: try again shortly");
}

/* Hands the precheck or the handler to the worker pool: the connection is suspended (the event
 * thread goes on with other connections) until the worker resumes it.  A full queue, or a
 * server that is stopping, is answered 503 at once. */
static enum MHD_Result
submit (request_context *context, request_phase phase)
{
  gn_http_server *server = context->server;
  bool queued = false;

  g_mutex_lock (&server->pool_lock);
  if (!server->stopping && server->jobs.length < server->queue_max) {
    context->phase = phase;
    context->in_pool = true;
    g_atomic_int_inc (&server->in_pool);
    /* Suspended before any worker can see the job, so its resume cannot come first. */
    MHD_suspend_connection (context->request.connection);
    context->job_link.data = context;
    g_queue_push_tail_link (&server->jobs, &context->job_link);
    g_cond_signal (&server->pool_wake);
    queued = true;
  }
  g_mutex_unlock (&server->pool_lock);
  if (queued)
    return MHD_YES;

  if (!server->stopping)
    g_atomic_int_inc (&server->refused_busy);
  if (phase == PHASE_PRECHECK) {
    context->hold_answer = true;
    refuse_busy (context);
    return answered_before_body (context);
  }
  refuse_busy (context);
  return context->queue_failed ? MHD_NO : MHD_YES;
}

/* The connection came back from the pool (or closed on the way). */
static void
back_from_pool (request_context *context)
{
  if (!context->in_pool)
    return;
  context->in_pool = false;
  g_atomic_int_dec_and_test (&context->server->in_pool);
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
    return answered_before_body (context);
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
  connection_in_request (server, connection, true);

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
  resolve_client (context);
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
      return answered_before_body (context);
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
      return submit (context, PHASE_PRECHECK);
    run_precheck (context);
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
    discard_spool (context);
  if (context->spool_fd >= 0) {
    close (context->spool_fd);
    context->spool_fd = -1;
  }

  if (request->status != 0) { /* answered before the body: 413, or a hook's answer */
    release_held_answer (context);
    return context->queue_failed ? MHD_NO : MHD_YES;
  }
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
    if (context->server->workers != NULL)
      return submit (context, PHASE_HANDLER);
    run_handler (context);
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
      back_from_pool (context);
      gn_log_set_service (context->server->name);
      gn_log_set_request_id (context->request.request_id);
      return prepare_body (context);
    case PHASE_HANDLER_DONE: /* and the final call */
      back_from_pool (context);
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

  back_from_pool (context);
  if (context->phase != PHASE_NEW)
    connection_in_request (server, connection, false);
  discard_spool (context);
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
      flags, (uint16_t) options->port, accept_policy, server, access_handler, server,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, server,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &native,
      MHD_OPTION_THREAD_POOL_SIZE, threads,
      MHD_OPTION_CONNECTION_LIMIT, connection_limit,
      MHD_OPTION_CONNECTION_TIMEOUT, timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONNECTION_MEMORY_LIMIT,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned) LISTEN_BACKLOG,
      MHD_OPTION_URI_LOG_CALLBACK, uri_log_callback, server,
      MHD_OPTION_NOTIFY_COMPLETED, request_completed, server,
      MHD_OPTION_NOTIFY_CONNECTION, notify_connection, server,
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

  server->reaper = g_thread_new ("http-reaper", reaper_main, server);
  if (options->blocking_handlers) {
    server->n_workers = options->workers > 0 ? (unsigned)options->workers : 4 * cores;
    server->workers = g_new0 (GThread *, server->n_workers);
    for (unsigned i = 0; i < server->n_workers; i++)
      server->workers[i] = g_thread_new ("http-worker", worker_main, server);
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
    refuse_busy (context);
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
