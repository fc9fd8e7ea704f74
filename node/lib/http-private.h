/* http-private.h - what the parts of the HTTP listener share (see http.c for how a request
 * lives): the server and request structures, and the functions one part calls in another.
 *
 *   http.c           the request's life, responses, the server's start and stop
 *   http-address.c   the client's address (trusted proxies) and the base URL it used
 *   http-guard.c     every open connection: the per-address cap and the header timeout
 *   http-pool.c      the worker pool that runs blocking prechecks and handlers
 *
 * Nothing outside node/lib/http*.c includes this. */
#pragma once

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
   * queued on the first call it would cost the keep-alive (see the top of http.c). */
  bool hold_answer;
  struct MHD_Response *held;
  int held_status;
  bool precheck_refused;   /* the precheck answered: the body is not read */
  bool from_trusted_proxy; /* the peer is one of the server's trusted proxies */
} request_context;

static inline request_context *
context_of (gn_http_request *request)
{
  return (request_context *)request;
}

/* http.c: answers */
enum MHD_Result http_answered_before_body (request_context *context);
void http_discard_spool (request_context *context);
void http_respond_error_message (gn_http_request *request, int status, const char *code,
                                 const char *message);

/* http-address.c */
GInetAddress *http_sockaddr_to_inet (const struct sockaddr *native);
bool http_address_is_trusted (gn_http_server *server, GInetAddress *address);
void http_resolve_client (request_context *context);

/* http-guard.c: libmicrohttpd's accept policy and connection notices, the reaper thread */
enum MHD_Result http_accept_policy (void *cls, const struct sockaddr *address,
                                    socklen_t address_len);
void http_notify_connection (void *cls, struct MHD_Connection *connection, void **socket_context,
                             enum MHD_ConnectionNotificationCode code);
gpointer http_reaper_main (gpointer data);
void http_connection_in_request (gn_http_server *server, struct MHD_Connection *connection,
                                 bool in_request);

/* http-pool.c */
gpointer http_worker_main (gpointer data);
void http_refuse_busy (request_context *context);
enum MHD_Result http_submit (request_context *context, request_phase phase);
void http_run_precheck (request_context *context);
void http_run_handler (request_context *context);
void http_back_from_pool (request_context *context);
