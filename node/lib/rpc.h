/* rpc.h - table-driven gRPC server and client over gRPC core + protobuf-c.
 *
 * Server.  A service is a protoc-c service descriptor plus a table of handlers, one per method
 * name.  gn_rpc_server_add_service() registers "/package.Service/Method" for every entry: unary
 * methods with GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, so the request bytes arrive with the
 * new-call event; client-streaming methods with GRPC_SRM_PAYLOAD_NONE, their handler reading
 * the messages one by one (gn_rpc_reader_next).  A catch-all slot answers UNIMPLEMENTED for
 * unknown methods at once.
 *
 * Threads: `cq_threads` completion-queue threads each poll their own completion queue, with
 * `slots_per_method` request slots armed per method.  On a new call the thread re-arms the
 * slot, decodes the request into the call's arena and either runs the handler inline (methods
 * without GN_RPC_BLOCKING) or queues it for its service's bounded worker pool (`workers`
 * threads per service, at most `queue_max` waiting).  Pools are per service so that a handler
 * calling another service in the same process (CreatePost -> AttachMedia) cannot be starved by
 * its own callers holding every worker; a handler must not call its own service.  Handlers
 * that touch PostgreSQL or Redis are GN_RPC_BLOCKING and use
 * the worker thread's own connections (see pg.h: gn_pg_thread_conn).  A full queue answers
 * RESOURCE_EXHAUSTED at once; a queued call whose deadline passed is answered
 * DEADLINE_EXCEEDED without running.
 *
 * Metadata both ways: "x-request-id", "traceparent" and "authorization" are read from the
 * call and exposed through gn_rpc_call_*(); the log context of the handling thread is set
 * from them.  If an authenticator is installed and the call carries "authorization: Bearer
 * <token>", the rpc layer verifies it before the handler runs (UNAUTHENTICATED if invalid) and
 * the handler reads the caller from gn_rpc_call_user_id().  The answer carries the request id
 * back in initial metadata, and an error's machine-readable reason in trailing metadata
 * "x-error-code".
 *
 * This layer is the one place where deadlines, metadata, metrics, tracing and error mapping
 * hook in: the observer callback sees every finished call with its method, status and time.
 *
 * Client.  gn_rpc_client_get(target) returns a shared channel for a target ("unix:/path" or
 * "host:port"); gn_rpc_unary() performs one blocking unary call on its own pluck queue, with a
 * deadline (the parent's, if shorter), metadata propagated from the parent call or given
 * explicitly, and the status, message and reason returned. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <glib.h>

#include "arena.h"

typedef struct gn_rpc_server gn_rpc_server;
typedef struct gn_rpc_call gn_rpc_call;

/* Returns GRPC_STATUS_OK and sets *response (allocated from the call's arena, see
 * gn_rpc_call_arena) or returns an error code after gn_rpc_call_fail() described it. */
typedef grpc_status_code (*gn_rpc_handler) (gn_rpc_call *call, const ProtobufCMessage *request,
                                            ProtobufCMessage **response);

/* Client-streaming methods (`rpc Upload(stream UploadChunk) returns (Media)`): the handler
 * pulls the request messages one at a time with gn_rpc_reader_next() and answers once.  Such
 * handlers always run on the worker pool (the reads block). */
typedef struct gn_rpc_reader gn_rpc_reader;

/* Returns 1 and sets *message (valid until the next call: each message is decoded into a
 * scratch arena that is reset, so a long stream does not grow the call's memory), 0 at the end
 * of the stream, or -1 if the stream broke (client cancelled, deadline passed, a message that
 * does not decode); after -1 the handler just returns, its status is not sent. */
int gn_rpc_reader_next (gn_rpc_reader *reader, ProtobufCMessage **message);

typedef grpc_status_code (*gn_rpc_stream_handler) (gn_rpc_call *call, gn_rpc_reader *reader,
                                                   ProtobufCMessage **response);

enum {
  GN_RPC_BLOCKING = 1 << 0, /* runs on the worker pool */
};

typedef struct {
  const char *name; /* method name as in the .proto, e.g. "Register" */
  gn_rpc_handler handler;
  unsigned flags;
  /* Instead of handler, for client-streaming methods (the descriptor does not say which
   * methods stream, so the table does). */
  gn_rpc_stream_handler stream_handler;
} gn_rpc_method;

typedef struct {
  const ProtobufCServiceDescriptor *descriptor;
  const gn_rpc_method *methods; /* terminated by an entry whose name is NULL */
  const char *log_name;         /* "auth", "post", ... */
  void *data;                   /* service state, see gn_rpc_call_service_data */
} gn_rpc_service;

typedef struct {
  int cq_threads;       /* default 2 */
  int slots_per_method; /* default 4 */
  int workers;          /* per service, default 8 */
  int queue_max;        /* default 1024 */
} gn_rpc_server_options;

/* Verifies a bearer token; on success writes the user id (NUL-terminated) and returns true. */
typedef bool (*gn_rpc_authenticator) (void *data, const char *token, char user_id[64]);

/* Called once per finished call, on the thread that finished it. */
typedef struct {
  const char *service; /* log_name */
  const char *method;
  const char *request_id;
  grpc_status_code status;
  double queue_ms;   /* waiting for a worker */
  double handler_ms; /* running the handler */
} gn_rpc_call_report;
typedef void (*gn_rpc_observer) (void *data, const gn_rpc_call_report *report);

gn_rpc_server *gn_rpc_server_new (const gn_rpc_server_options *options); /* NULL = defaults */
void gn_rpc_server_set_authenticator (gn_rpc_server *server, gn_rpc_authenticator fn, void *data);
void gn_rpc_server_set_observer (gn_rpc_server *server, gn_rpc_observer fn, void *data);
/* Fails (FALSE) if a method name has no match in the descriptor. */
gboolean gn_rpc_server_add_service (gn_rpc_server *server, const gn_rpc_service *service,
                                    GError **error);
/* "unix:/path/x.sock" or "127.0.0.1:port" (port 0 picks one; *bound_port gets it if non-NULL). */
gboolean gn_rpc_server_listen (gn_rpc_server *server, const char *address, int *bound_port,
                               GError **error);
gboolean gn_rpc_server_start (gn_rpc_server *server, GError **error);
/* Graceful: stops taking calls, waits up to grace_ms for running ones, cancels the rest. */
void gn_rpc_server_shutdown (gn_rpc_server *server, int grace_ms);
void gn_rpc_server_free (gn_rpc_server *server);

/* Per-call accessors for handlers. */
gn_arena *gn_rpc_call_arena (gn_rpc_call *call);
void *gn_rpc_call_service_data (gn_rpc_call *call);
const char *gn_rpc_call_method (gn_rpc_call *call);
const char *gn_rpc_call_request_id (gn_rpc_call *call);    /* never NULL: generated if absent */
const char *gn_rpc_call_traceparent (gn_rpc_call *call);   /* NULL if absent */
const char *gn_rpc_call_authorization (gn_rpc_call *call); /* raw "Bearer ..." or NULL */
const char *gn_rpc_call_user_id (gn_rpc_call *call);       /* NULL if unauthenticated */
gpr_timespec gn_rpc_call_deadline (gn_rpc_call *call);
/* Milliseconds until the deadline (negative once passed). */
int64_t gn_rpc_call_remaining_ms (gn_rpc_call *call);
/* Records the error to send; returns code for `return gn_rpc_call_fail (...)`.
 * reason: a stable word such as "username_taken" (may be NULL).  The message is cut to at most
 * GN_RPC_MAX_MESSAGE bytes (at a character boundary), so quoting the request stays safe. */
#define GN_RPC_MAX_MESSAGE 1024
grpc_status_code gn_rpc_call_fail (gn_rpc_call *call, grpc_status_code code, const char *reason,
                                   const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));
/* Shorthand: UNAUTHENTICATED unless the call carries a verified user. */
#define GN_RPC_REQUIRE_USER(call)                                                                  \
  do {                                                                                             \
    if (gn_rpc_call_user_id (call) == NULL)                                                        \
      return gn_rpc_call_fail ((call), GRPC_STATUS_UNAUTHENTICATED, "unauthenticated",             \
                               "sign-in required");                                                \
  } while (0)

/* Client. */
typedef struct gn_rpc_client gn_rpc_client;

/* Shared per target for the life of the process (freed by gn_rpc_clients_shutdown). */
gn_rpc_client *gn_rpc_client_get (const char *target);
void gn_rpc_clients_shutdown (void);

typedef struct {
  gn_rpc_call *parent;       /* propagate deadline and metadata from this server call */
  const char *request_id;    /* used when there is no parent */
  const char *traceparent;   /* used when there is no parent */
  const char *authorization; /* "Bearer ..." forwarded to the callee; overrides the parent's */
  int timeout_ms;            /* 0 = 5000, or the parent's remaining time if shorter */
} gn_rpc_call_options;

typedef struct {
  grpc_status_code code;
  char message[256]; /* status details ("" on OK) */
  char reason[64];   /* "x-error-code" trailer ("" if none) */
} gn_rpc_status;

/* Blocking unary call.  On GRPC_STATUS_OK *response is decoded into `arena` (which owns it).
 * method: the method's name in the descriptor ("Register"). */
grpc_status_code gn_rpc_unary (gn_rpc_client *client, const ProtobufCServiceDescriptor *service,
                               const char *method, const ProtobufCMessage *request,
                               ProtobufCMessage **response, gn_arena *arena,
                               const gn_rpc_call_options *options, gn_rpc_status *status);

/* Client side of a client-streaming call: open, send messages, finish.  One thread uses a
 * stream at a time.  gn_rpc_stream_send() blocks while the transport's flow control says so
 * (bounded memory for large uploads) and returns FALSE once the call has failed, e.g. the
 * server answered early with an error; gn_rpc_stream_finish() then reports that status. */
typedef struct gn_rpc_stream gn_rpc_stream;

gn_rpc_stream *gn_rpc_stream_open (gn_rpc_client *client, const ProtobufCServiceDescriptor *service,
                                   const char *method, const gn_rpc_call_options *options);
gboolean gn_rpc_stream_send (gn_rpc_stream *stream, const ProtobufCMessage *message);
/* Half-closes, waits for the answer, frees the stream.  On OK *response is decoded into arena. */
grpc_status_code gn_rpc_stream_finish (gn_rpc_stream *stream, ProtobufCMessage **response,
                                       gn_arena *arena, gn_rpc_status *status);
/* Abandons the call (cancels it) and frees the stream. */
void gn_rpc_stream_cancel (gn_rpc_stream *stream);

/* The same call in two steps, so one thread can have several calls in flight (a feed page asks
 * auth and media at once): start sends the request and returns at once; finish waits for the
 * answer, decodes it like gn_rpc_unary and frees the pending call.  Every started call must be
 * finished exactly once. */
typedef struct gn_rpc_pending gn_rpc_pending;

gn_rpc_pending *gn_rpc_unary_start (gn_rpc_client *client,
                                    const ProtobufCServiceDescriptor *service, const char *method,
                                    const ProtobufCMessage *request,
                                    const gn_rpc_call_options *options);
grpc_status_code gn_rpc_unary_finish (gn_rpc_pending *pending, ProtobufCMessage **response,
                                      gn_arena *arena, gn_rpc_status *status);

/* "OK", "NOT_FOUND", ... */
const char *gn_rpc_status_name (grpc_status_code code);
