/* http.h - the HTTP listener shared by the gateway and the CDN, on libmicrohttpd.
 *
 * libmicrohttpd's epoll event threads hold the connections: an idle or slow connection costs
 * memory (~16 KiB), never a thread.  For each request the access handler returns MHD_YES on
 * its first call (queueing a response there would force "Connection: close"), streams the
 * upload into the request's arena (or, past a threshold, into a spool file) while enforcing
 * the route's body limit (413 as soon as Content-Length or the received bytes exceed it),
 * then dispatches through the router on the final call.
 *
 * Handlers that wait (blocking_handlers: the gateway's gRPC calls) and routes' prechecks run on
 * a bounded pool of worker threads while their connection is suspended, so the event threads
 * never wait; a full queue is answered 503 with Retry-After at once.  The admit hook and
 * everything else before the body run on the event thread and must not block.  Handlers that
 * never wait (the CDN's sendfile) run inline on the event thread.
 *
 * Bounds on what clients can hold: connections in all and per address (trusted proxies
 * exempt), an inactivity timeout, a time limit on receiving headers (slowloris), 16 KiB of
 * headers (431 beyond), and a stop that never waits longer than its grace.
 *
 * Around every handler this layer does, in one place: request id (from X-Request-Id or new),
 * CORS (preflights answered here, Access-Control-Allow-Origin on every answer for allowed
 * origins), bearer-token verification for routes that ask for it, content negotiation of
 * errors (plain text by default as API v1 requires; RFC 9457 problem+json when the client's
 * Accept asks for it), 404/405, the access log line and the observer hook (metrics, tracing).
 * Handlers only read the request and call one gn_http_respond_*() function. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "arena.h"
#include "router.h"

struct MHD_Connection;

struct gn_http_request {
  gn_arena *arena;
  struct MHD_Connection *connection;
  const char *method;
  const char *path; /* without the query string */
  const gn_route *route;
  gn_route_param params[GN_ROUTE_MAX_PARAMS];
  size_t n_params;
  const char *body; /* NUL-terminated, body_len bytes; NULL if no body */
  size_t body_len;
  const char *spool_path;      /* set instead of body for large bodies of GN_ROUTE_RAW_BODY routes
                                * and for the file of GN_ROUTE_MULTIPART routes (body_len is then the
                                * file's size); removed when the request ends */
  const char *upload_filename; /* GN_ROUTE_MULTIPART: the file part's name and type, */
  const char *upload_content_type; /* as the client sent them (NULL if no file part) */
  char request_id[65];             /* the client's X-Request-Id (<= 64 safe characters) or a UUID */
  const char *authorization;       /* raw header value, NULL if absent */
  const char *user_id;             /* verified bearer token's subject, or NULL */
  const char *client_ip;           /* the peer's address; when the peer is a trusted proxy, the
                                    * client it names in X-Forwarded-For */
  bool problem_json;               /* the client asked for application/problem+json errors */
  int status;                      /* set by gn_http_respond_*; 0 until then */
  void *server_data;               /* gn_http_server_options.data */
};

typedef bool (*gn_http_authenticator) (void *data, const char *token, char user_id[64]);

/* Admission: called for every request that matched a route, once the headers are in and the
 * bearer token was checked, before any body byte is read (rate limits attach here).  Returns
 * true to go on; false after answering with gn_http_respond_*(), and then the body is not read
 * (a request with a body gets "Connection: close"). */
typedef bool (*gn_http_admit) (void *data, gn_http_request *request);

typedef struct {
  const char *method;
  const char *route; /* pattern, or "-" when nothing matched */
  const char *request_id;
  int status;
  size_t bytes_out;
  double ms;
} gn_http_report;
typedef void (*gn_http_observer) (void *data, const gn_http_report *report);

typedef struct {
  const char *name;    /* "gateway" or "cdn": log service name */
  const char *address; /* bind address, default "0.0.0.0" */
  int port;            /* 0 picks one (see gn_http_server_port) */
  int threads;         /* epoll event threads; default 2 * cores, or cores with blocking_handlers */
  size_t max_body;     /* default body limit, bytes (default 1 MiB) */
  size_t spool_threshold; /* RAW_BODY bodies larger than this go to a temp file (default 256 KiB) */
  const char *spool_dir;  /* for those files (default g_get_tmp_dir) */
  const char *cors_origins; /* comma-separated; "*" = any */
  gn_router *router;
  gn_http_authenticator authenticate;
  void *auth_data;
  gn_http_observer observer;
  void *observer_data;
  void *data;                 /* copied to request->server_data */
  int connection_timeout_s;   /* a connection on which nothing arrives for this long is closed:
                               * idle keep-alive, stalled headers or body (default 60) */
  int header_timeout_s;       /* a request's headers must be complete this long after their first
                               * byte (checked every half of it; default 30) */
  bool blocking_handlers;     /* handlers and prechecks wait on upstream calls: they run on a pool
                               * of `workers` threads while the connection is suspended */
  int workers;                /* blocking_handlers: pool size (default 4 * cores) */
  int queue_max;              /* blocking_handlers: requests waiting for a worker (default 1024);
                               * beyond, 503 with Retry-After at once */
  int max_connections;        /* concurrent connections (default 16384, lowered to what the open
                               * file limit allows); more are refused */
  int max_connections_per_ip; /* per client address (default 256); trusted proxies are exempt */
  int stop_grace_ms;          /* gn_http_server_stop waits this long for requests in progress
                               * (default 5000) */
  gn_http_admit admit;        /* optional, see gn_http_admit */
  void *admit_data;
  const char *public_url;      /* how clients reach this server ("https://photos.example.org");
                                * NULL or "": derived from each request, see gn_http_base_url */
  const char *trusted_proxies; /* comma-separated addresses or CIDR blocks ("127.0.0.1,
                                * 10.0.0.0/8") whose X-Forwarded-For/-Host/-Proto are believed */
} gn_http_server_options;

typedef struct gn_http_server gn_http_server;

gn_http_server *gn_http_server_start (const gn_http_server_options *options, GError **error);
int gn_http_server_port (gn_http_server *server);
/* Stops accepting, answers requests still queued for a worker with 503, gives requests in
 * progress until stop_grace_ms to finish, then closes every connection and frees the server.
 * Returns false if handlers were still running at the deadline: the server is then left
 * running (its memory in use by them) to the process's exit, so route data must not be freed
 * either. */
bool gn_http_server_stop (gn_http_server *server);

/* Request accessors. */
const char *gn_http_header (gn_http_request *request, const char *name);
const char *gn_http_query (gn_http_request *request, const char *name);
const char *gn_http_param (gn_http_request *request, const char *name);

/* The base URL the client used to reach this server, without a trailing slash
 * ("http://192.168.1.20:8080"): the configured public_url if set; otherwise from the request,
 * X-Forwarded-Proto and X-Forwarded-Host when the peer is a trusted proxy, else the Host
 * header (checked: a host name or address with an optional port), else the address the
 * connection came in on.  Allocated from the request's arena. */
const char *gn_http_base_url (gn_http_request *request);

/* Lowers the body limit of this request (only from a route's precheck): e.g. to the size an
 * upload URL was signed for.  A declared Content-Length over it is refused with 413 before any
 * body byte is read, a body that grows past it with 413 as soon as it does. */
void gn_http_set_body_limit (gn_http_request *request, size_t limit);

/* A non-file field of a GN_ROUTE_MULTIPART request (NULL if absent, or if it ends in a cut
 * UTF-8 sequence).  A field holding a NUL or invalid UTF-8 was refused with 400 before the
 * handler ran, as was a file part whose name or type is not text. */
const char *gn_http_form_field (gn_http_request *request, const char *name);

/* Responses: exactly one per request.  Bodies are copied. */
void gn_http_respond (gn_http_request *request, int status, const char *content_type,
                      const char *body, size_t len);
void gn_http_respond_json (gn_http_request *request, int status, const char *json, size_t len);
/* Sends `length` bytes of the open file fd from `offset` (sendfile on plain TCP; HEAD gets the
 * headers only).  The response owns fd: it is closed when the answer is done, or at once if
 * it cannot be sent. */
void gn_http_respond_file (gn_http_request *request, int status, int fd, uint64_t offset,
                           uint64_t length, const char *content_type);
/* Adds a response header to the pending answer (before a respond call). */
void gn_http_add_header (gn_http_request *request, const char *name, const char *value);
/* code: stable machine word ("username_taken"); message: shown to people.  Plain text
 * "message\n" by default, problem+json {type,title,status,detail,code} when asked for. */
void gn_http_respond_error (gn_http_request *request, int status, const char *code, const char *fmt,
                            ...) __attribute__ ((format (printf, 4, 5)));

/* The reason phrase for a status ("Not Found"). */
const char *gn_http_status_title (int status);

/* s as a JSON string literal, quotes included, allocated from arena: ", \ and control
 * characters escaped, invalid UTF-8 bytes replaced by U+FFFD; NULL gives null. */
char *gn_http_json_quote (gn_arena *arena, const char *s);
