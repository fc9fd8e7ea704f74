/* rpc.c - table-driven gRPC server and client over gRPC core + protobuf-c.
 *
 * The contract is in rpc.h; this comment explains the machinery behind it.
 *
 * Tags.  Everything that goes through a completion queue is tagged with a struct whose first
 * member is a tag_kind, so a completion-queue thread can tell a new call on a request slot
 * from a finished call and from the server's shutdown notification by looking at that word.
 *
 * Server threads.  Each of the `cq_threads` threads owns one completion queue, registered with
 * the server.  At start every queue gets `slots_per_method` request slots per registered method
 * (grpc_server_request_registered_call, the request bytes arrive with the call) plus as many
 * catch-all slots (grpc_server_request_call) that answer UNIMPLEMENTED, because without them a
 * call to an unknown method would hang until the client's deadline.  When a slot fires, the
 * thread moves the new call into a gn_rpc_call, re-arms the slot at once (so the server never
 * runs out of slots while a handler runs) and dispatches:
 *   - unknown method            -> UNIMPLEMENTED, answered on the spot;
 *   - undecodable payload       -> INVALID_ARGUMENT "malformed request";
 *   - method without BLOCKING   -> handler runs inline on the completion-queue thread;
 *   - GN_RPC_BLOCKING           -> appended to the worker queue, or RESOURCE_EXHAUSTED at once
 *                                  if `queue_max` calls are already waiting.
 * Blocking handlers must not run inline: one slow database call would stall every call that
 * shares the completion queue.  Whoever runs a handler (completion-queue thread or worker) also
 * starts the final batch itself (initial metadata with x-request-id, the response message, the
 * status with the x-error-code trailer).  That batch completes on the call's completion queue,
 * whose thread reports the call to the observer and frees it (a call the client cancelled or
 * let expire is reported as CANCELLED or DEADLINE_EXCEEDED, whatever the handler returned; an
 * unknown method is reported with service "" and its full path as method).
 *
 * Client-streaming methods (a table entry with stream_handler) are registered with
 * GRPC_SRM_PAYLOAD_NONE: the new-call event carries no message, and the call always goes to the
 * worker queue (same queue limit, deadline skip, authenticator, metadata, log context and
 * observer as a blocking unary call).  The handler pulls messages with gn_rpc_reader_next(),
 * which starts a one-op GRPC_OP_RECV_MESSAGE batch tagged with the gn_rpc_reader and sleeps on
 * the reader's condition variable.  The batch completes on the call's completion queue; its
 * thread (TAG_STREAM_READ) only records the outcome under the reader's mutex and signals, so
 * a completion-queue thread never blocks on a stream and one batch at most is outstanding per
 * stream.  Each message is decoded into a scratch arena that is reset before the next read, and
 * the transport's flow control holds back the rest, so memory stays bounded by about one
 * message per stream however long the upload is.
 *   A NULL message means the read side closed, which gRPC core reports the same way (success,
 * no payload) for a client's half-close and for a cancellation or an expired deadline.  The
 * reader tells them apart by sending the response's initial metadata right then: the cancel
 * that closed the read side closed the write side in the same transport step, so the send
 * fails on a broken stream and succeeds on a finished one.  End of stream -> 0; a failed read,
 * a failed probe or a message that does not decode -> -1, after which the handler's own answer
 * is replaced (INVALID_ARGUMENT "malformed_request" for bad bytes; anything for a cancelled call,
 * whose final batch just fails).  The final batch is the unary one minus the initial metadata
 * if the probe already sent it; it also holds RECV_CLOSE_ON_SERVER, which completes once the
 * status is out even if the client is still sending: a handler may answer early (refuse an
 * upload after its first message) and the client learns it at once.
 *
 * Memory.  A gn_rpc_call owns an arena: the decoded request, the handler's response, the copied
 * metadata strings and the error message all live in it, and it is released with the call
 * after the final batch completed.  Everything the final batch points at (slices, metadata
 * arrays, the response buffer) is kept in the gn_rpc_call for the same reason.
 *
 * Shutdown (gn_rpc_server_shutdown) follows the order that measured clean under valgrind:
 * stop re-arming slots -> grpc_server_shutdown_and_notify and wait up to the grace period ->
 * grpc_server_cancel_all_calls (queued calls are then answered without running) -> wait until
 * every gn_rpc_call is freed -> stop the workers -> grpc_server_destroy -> shut down and drain
 * each completion queue, join its thread.
 *
 * Client.  One grpc_channel per target, created on first use and kept in a mutex-protected
 * table until gn_rpc_clients_shutdown(); channels are thread-safe, so any number of threads may
 * call gn_rpc_unary() at once.  Each call uses its own pluck completion queue and one batch
 * with all six unary operations.  A server call given as parent is passed to gRPC with
 * GRPC_PROPAGATE_DEFAULTS, so the child inherits the parent's deadline and is cancelled with it.
 *
 * Client streams.  gn_rpc_stream_open() creates the call the same way (own pluck queue, same
 * deadline, parent and metadata rules) and starts two batches: the initial metadata, and one
 * that receives everything the server will say (initial metadata, the response message, the
 * status with its trailers), so an early answer is captured whenever it comes.  Each
 * gn_rpc_stream_send() first polls that answer batch without waiting (an answered call takes
 * no more messages), then starts one GRPC_OP_SEND_MESSAGE batch and plucks it: gRPC allows one
 * send in flight, its completion means the transport took the bytes within its flow-control
 * window, so a fast sender is paced by the receiver and holds one message at a time.  A send
 * fails once the server answered or the call broke (the server's RST_STREAM fails a send that
 * is waiting for window).  gn_rpc_stream_finish() half-closes and plucks every outstanding
 * batch; gn_rpc_stream_cancel() calls grpc_call_cancel() and plucks them likewise, so no batch
 * outlives its stream.
 *
 * grpc_init() is reference counted: every server holds one reference until it is freed and the
 * client table holds one until gn_rpc_clients_shutdown(). */
#include <gio/gio.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pb-check.h"
#include "rpc.h"

#define MAX_MESSAGE_BYTES (16 * 1024 * 1024)
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_REQUEST_ID_LENGTH 128
#define MAX_TRACEPARENT_LENGTH 256

typedef enum {
  TAG_REQUEST_SLOT,
  TAG_CALL,
  TAG_SERVER_SHUTDOWN,
  TAG_STREAM_READ,
} tag_kind;

typedef struct {
  gn_rpc_service service;
  gn_rpc_method entry;
  const ProtobufCMethodDescriptor *descriptor;
  char *path; /* "/package.Service/Method" */
  void *registered;
  bool streaming; /* entry.stream_handler: registered without payload, read by the handler */
  struct worker_pool *pool; /* the worker pool of its service */
} rpc_method;

/* Each service has its own bounded pool of workers and its own queue (a bulkhead): a handler
 * that calls another service in the same process (CreatePost -> AttachMedia) waits while that
 * call runs on the other service's workers, so a burst of callers can never take every worker
 * the callees need, and a slow service cannot starve the others.  All pools share the server's
 * lock.  A handler must not call its own service. */
typedef struct worker_pool {
  const ProtobufCServiceDescriptor *descriptor;
  char name[24];   /* thread names: "rpc-<service>" */
  GQueue queue;    /* gn_rpc_call * waiting for a worker */
  GCond work_cond; /* the queue has calls, or workers_stop */
  GThread **threads;
  int n_threads;
  struct gn_rpc_server *server;
} worker_pool;

typedef struct {
  gn_rpc_server *server;
  grpc_completion_queue *cq;
  GThread *thread;
} cq_thread;

/* One armed grpc_server_request_*call; method NULL for the catch-all. */
typedef struct {
  tag_kind kind;
  cq_thread *cq;
  rpc_method *method;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_call_details details;
  grpc_metadata_array metadata;
  grpc_byte_buffer *payload;
} request_slot;

struct gn_rpc_call {
  tag_kind kind;
  gn_rpc_server *server;
  rpc_method *method; /* NULL: unknown method */
  const char *path;
  grpc_call *call;
  gpr_timespec deadline; /* GPR_CLOCK_MONOTONIC */
  grpc_metadata_array metadata;
  grpc_byte_buffer *payload;
  gn_arena *arena;
  ProtobufCMessage *request;

  const char *request_id;
  const char *traceparent;
  const char *authorization;
  char user_id[64];
  bool authenticated;

  /* What gn_rpc_call_fail() recorded. */
  const char *message;
  const char *reason;

  /* The final batch and everything it points at. */
  grpc_status_code status;
  grpc_metadata initial_metadata[1];
  bool initial_metadata_sent; /* by a stream reader's end-of-stream probe */
  grpc_metadata trailing_metadata[1];
  size_t trailing_count;
  grpc_slice details;
  grpc_byte_buffer *response_payload;
  int cancelled;

  gint64 received_us;
  gint64 started_us;
  gint64 finished_us;
};

/* The read side of a client-streaming call, on the stack of the worker running its handler. */
struct gn_rpc_reader {
  tag_kind kind; /* TAG_STREAM_READ: tags the reader's one-op batches */
  gn_rpc_call *call;
  gn_arena *scratch; /* the current message; reset before each read */
  grpc_byte_buffer *payload;

  GMutex lock;
  GCond cond;
  bool batch_done; /* set by the completion-queue thread */
  bool batch_success;

  bool ended;
  bool broken; /* the handler's answer is replaced by broken_code */
  grpc_status_code broken_code;
  const char *broken_reason;
  const char *broken_message;
};

struct gn_rpc_server {
  grpc_server *grpc;
  gn_rpc_server_options options;
  gn_rpc_authenticator authenticator;
  void *authenticator_data;
  gn_rpc_observer observer;
  void *observer_data;

  GPtrArray *methods; /* rpc_method *, owned */
  cq_thread *cqs;
  request_slot *slots;
  size_t slot_count;
  GPtrArray *pools; /* worker_pool *, one per service, owned */

  GMutex lock;
  GCond state_cond; /* shutdown: shutdown_notified, live_calls */
  int live_calls;
  bool shutdown_notified;
  bool cancelling; /* queued calls are answered without running their handler */
  bool workers_stop;

  gint stopping; /* atomic: request slots are no longer re-armed */
  bool listening;
  bool started;
  bool shut_down;
  tag_kind shutdown_tag;
};

static const char *const status_names[] = {
  [GRPC_STATUS_OK] = "OK",
  [GRPC_STATUS_CANCELLED] = "CANCELLED",
  [GRPC_STATUS_UNKNOWN] = "UNKNOWN",
  [GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
  [GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
  [GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
  [GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
  [GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
  [GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
  [GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
  [GRPC_STATUS_ABORTED] = "ABORTED",
  [GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
  [GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
  [GRPC_STATUS_INTERNAL] = "INTERNAL",
  [GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
  [GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
  [GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *
gn_rpc_status_name (grpc_status_code code)
{
  if ((unsigned)code < G_N_ELEMENTS (status_names) && status_names[code] != NULL)
    return status_names[code];
  return "INVALID_STATUS";
}

/* Shared helpers. */

static gpr_timespec
deadline_after_ms (int64_t ms)
{
  return gpr_time_add (gpr_now (GPR_CLOCK_MONOTONIC), gpr_time_from_millis (ms, GPR_TIMESPAN));
}

static int64_t
remaining_ms (gpr_timespec deadline)
{
  if (gpr_time_cmp (deadline, gpr_inf_future (deadline.clock_type)) == 0)
    return INT64_MAX;
  return gpr_time_to_millis (gpr_time_sub (deadline, gpr_now (deadline.clock_type)));
}

/* Accepts ids a log line can carry verbatim: letters, digits and "-_.:". */
static bool
request_id_is_valid (const char *id, size_t length)
{
  if (length == 0 || length > MAX_REQUEST_ID_LENGTH)
    return false;
  for (size_t i = 0; i < length; i++)
    if (!g_ascii_isalnum (id[i]) && strchr ("-_.:", id[i]) == NULL)
      return false;
  return true;
}

static bool
printable_ascii (const char *s, size_t length)
{
  for (size_t i = 0; i < length; i++)
    if (!g_ascii_isprint (s[i]))
      return false;
  return true;
}

static char *
slice_to_arena (gn_arena *arena, grpc_slice slice)
{
  return gn_arena_strndup (arena, (const char *)GRPC_SLICE_START_PTR (slice),
                           GRPC_SLICE_LENGTH (slice));
}

/* Serialises a message into a fresh byte buffer (the caller destroys it). */
static grpc_byte_buffer *
pack_message (const ProtobufCMessage *message)
{
  size_t size = protobuf_c_message_get_packed_size (message);
  grpc_slice slice = grpc_slice_malloc (size);
  protobuf_c_message_pack (message, GRPC_SLICE_START_PTR (slice));
  grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create (&slice, 1);
  grpc_slice_unref (slice);
  return buffer;
}

/* A received buffer's bytes in one slice (the caller unrefs it); false if it cannot be read. */
static bool
buffer_flatten (grpc_byte_buffer *buffer, grpc_slice *slice)
{
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init (&reader, buffer))
    return false;
  *slice = grpc_byte_buffer_reader_readall (&reader);
  grpc_byte_buffer_reader_destroy (&reader);
  return true;
}

static ProtobufCMessage *
unpack_slice (const ProtobufCMessageDescriptor *descriptor, grpc_slice slice, gn_arena *arena)
{
  return protobuf_c_message_unpack (descriptor, gn_arena_protobuf_allocator (arena),
                                    GRPC_SLICE_LENGTH (slice), GRPC_SLICE_START_PTR (slice));
}

/* A request's bytes decoded into the arena once they passed the proto3 text rules (pb-check.h:
 * protobuf-c itself would cut a string at a NUL and let invalid UTF-8 through); NULL with
 * *error set when refused. */
static ProtobufCMessage *
unpack_request (const ProtobufCMessageDescriptor *descriptor, grpc_slice slice, gn_arena *arena,
                GError **error)
{
  if (!gn_pb_check (descriptor, GRPC_SLICE_START_PTR (slice), GRPC_SLICE_LENGTH (slice), error)) {
    /* Text errors name the field; bad encodings get the one message protobuf-c's would. */
    if (g_error_matches (*error, GN_PB_ERROR, GN_PB_ERROR_MALFORMED)) {
      g_clear_error (error);
      g_set_error (error, GN_PB_ERROR, GN_PB_ERROR_MALFORMED, "malformed request");
    }
    return NULL;
  }
  ProtobufCMessage *message = unpack_slice (descriptor, slice, arena);
  if (message == NULL)
    g_set_error (error, GN_PB_ERROR, GN_PB_ERROR_MALFORMED, "malformed request");
  return message;
}

/* Decodes a received buffer into the arena; NULL if the bytes are not a valid message. */
static ProtobufCMessage *
unpack_message (const ProtobufCMessageDescriptor *descriptor, grpc_byte_buffer *buffer,
                gn_arena *arena)
{
  grpc_slice slice;
  if (!buffer_flatten (buffer, &slice))
    return NULL;
  ProtobufCMessage *message = unpack_slice (descriptor, slice, arena);
  grpc_slice_unref (slice);
  return message;
}

static const char *
metadata_lookup (const grpc_metadata_array *metadata, const char *key, size_t *length)
{
  for (size_t i = 0; i < metadata->count; i++)
    if (grpc_slice_str_cmp (metadata->metadata[i].key, key) == 0) {
      *length = GRPC_SLICE_LENGTH (metadata->metadata[i].value);
      return (const char *)GRPC_SLICE_START_PTR (metadata->metadata[i].value);
    }
  return NULL;
}

/* Server: per-call accessors. */

gn_arena *
gn_rpc_call_arena (gn_rpc_call *call)
{
  return call->arena;
}

void *
gn_rpc_call_service_data (gn_rpc_call *call)
{
  return call->method != NULL ? call->method->service.data : NULL;
}

const char *
gn_rpc_call_method (gn_rpc_call *call)
{
  return call->method != NULL ? call->method->entry.name : call->path;
}

const char *
gn_rpc_call_request_id (gn_rpc_call *call)
{
  return call->request_id;
}

const char *
gn_rpc_call_traceparent (gn_rpc_call *call)
{
  return call->traceparent;
}

const char *
gn_rpc_call_authorization (gn_rpc_call *call)
{
  return call->authorization;
}

const char *
gn_rpc_call_user_id (gn_rpc_call *call)
{
  return call->authenticated ? call->user_id : NULL;
}

gpr_timespec
gn_rpc_call_deadline (gn_rpc_call *call)
{
  return call->deadline;
}

int64_t
gn_rpc_call_remaining_ms (gn_rpc_call *call)
{
  return remaining_ms (call->deadline);
}

grpc_status_code
gn_rpc_call_fail (gn_rpc_call *call, grpc_status_code code, const char *reason, const char *fmt,
                  ...)
{
  va_list ap;
  va_start (ap, fmt);
  call->message = gn_arena_vprintf (call->arena, fmt, ap);
  va_end (ap);
  /* Messages may quote the request ("image/... is not a supported type").  The message travels
   * in grpc-message, a header: past the peer's metadata limit (8 KiB) the client drops the whole
   * answer and reports RESOURCE_EXHAUSTED instead of our status, so it is cut short. */
  if (strlen (call->message) > GN_RPC_MAX_MESSAGE)
    *g_utf8_find_prev_char (call->message, call->message + GN_RPC_MAX_MESSAGE - 2) = '\0';
  call->reason = gn_arena_strdup (call->arena, reason);
  return code;
}

/* Server: call life cycle. */

static gn_rpc_call *
call_new_from_slot (request_slot *slot)
{
  gn_rpc_server *server = slot->cq->server;
  gn_rpc_call *call = g_new0 (gn_rpc_call, 1);
  size_t length;
  const char *value;

  call->kind = TAG_CALL;
  call->server = server;
  call->method = slot->method;
  call->arena = gn_arena_new ();
  call->call = slot->call;
  call->metadata = slot->metadata;
  call->payload = slot->payload;
  call->details = grpc_empty_slice ();
  call->received_us = g_get_monotonic_time ();
  call->started_us = call->received_us;
  call->finished_us = call->received_us;
  if (slot->method != NULL) {
    call->path = slot->method->path;
    call->deadline = gpr_convert_clock_type (slot->deadline, GPR_CLOCK_MONOTONIC);
  } else {
    call->path = slice_to_arena (call->arena, slot->details.method);
    call->deadline = gpr_convert_clock_type (slot->details.deadline, GPR_CLOCK_MONOTONIC);
    grpc_call_details_destroy (&slot->details);
    grpc_call_details_init (&slot->details);
  }
  slot->call = NULL;
  slot->payload = NULL;
  grpc_metadata_array_init (&slot->metadata);

  value = metadata_lookup (&call->metadata, "x-request-id", &length);
  if (value != NULL && request_id_is_valid (value, length))
    call->request_id = gn_arena_strndup (call->arena, value, length);
  else {
    char *generated = g_uuid_string_random ();
    call->request_id = gn_arena_strdup (call->arena, generated);
    g_free (generated);
  }
  value = metadata_lookup (&call->metadata, "traceparent", &length);
  if (value != NULL && length <= MAX_TRACEPARENT_LENGTH && printable_ascii (value, length))
    call->traceparent = gn_arena_strndup (call->arena, value, length);
  value = metadata_lookup (&call->metadata, "authorization", &length);
  if (value != NULL)
    call->authorization = gn_arena_strndup (call->arena, value, length);

  g_mutex_lock (&server->lock);
  server->live_calls++;
  g_mutex_unlock (&server->lock);
  return call;
}

static void
call_free (gn_rpc_call *call)
{
  gn_rpc_server *server = call->server;

  grpc_slice_unref (call->initial_metadata[0].value);
  grpc_slice_unref (call->trailing_metadata[0].value);
  grpc_slice_unref (call->details);
  if (call->response_payload != NULL)
    grpc_byte_buffer_destroy (call->response_payload);
  if (call->payload != NULL)
    grpc_byte_buffer_destroy (call->payload);
  grpc_metadata_array_destroy (&call->metadata);
  grpc_call_unref (call->call);
  gn_arena_free (call->arena);
  g_free (call);

  g_mutex_lock (&server->lock);
  server->live_calls--;
  g_cond_broadcast (&server->state_cond);
  g_mutex_unlock (&server->lock);
}

/* The response's initial metadata: the request id back. */
static void
call_set_initial_metadata (gn_rpc_call *call)
{
  call->initial_metadata[0].key = grpc_slice_from_static_string ("x-request-id");
  call->initial_metadata[0].value = grpc_slice_from_copied_string (call->request_id);
}

/* Starts the final batch: request id back (unless a stream reader sent it), response (on OK),
 * status with the reason trailer. */
static void
call_respond (gn_rpc_call *call, grpc_status_code code, const ProtobufCMessage *response)
{
  grpc_op ops[4];
  size_t n = 0;

  call->status = code;
  if (code == GRPC_STATUS_OK)
    call->message = "";
  else if (call->message == NULL)
    call->message = gn_rpc_status_name (code);

  memset (ops, 0, sizeof ops);
  if (!call->initial_metadata_sent) {
    call_set_initial_metadata (call);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = 1;
    ops[n].data.send_initial_metadata.metadata = call->initial_metadata;
    n++;
  }
  if (code != GRPC_STATUS_OK && call->reason != NULL && call->reason[0] != '\0') {
    call->trailing_metadata[0].key = grpc_slice_from_static_string ("x-error-code");
    call->trailing_metadata[0].value = grpc_slice_from_copied_string (call->reason);
    call->trailing_count = 1;
  }
  call->details = grpc_slice_from_copied_string (call->message);

  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n].data.recv_close_on_server.cancelled = &call->cancelled;
  n++;
  if (code == GRPC_STATUS_OK) {
    call->response_payload = pack_message (response);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = call->response_payload;
    n++;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n].data.send_status_from_server.status_details = &call->details;
  ops[n].data.send_status_from_server.trailing_metadata_count = call->trailing_count;
  ops[n].data.send_status_from_server.trailing_metadata = call->trailing_metadata;
  n++;

  grpc_call_error error = grpc_call_start_batch (call->call, ops, n, call, NULL);
  if (error != GRPC_CALL_OK) {
    gn_error ("rpc %s: cannot send the response (call error %d)", call->path, (int)error);
    call_free (call);
  }
}

static grpc_status_code
call_fail_respond (gn_rpc_call *call, grpc_status_code code, const char *reason,
                   const char *message)
{
  gn_rpc_call_fail (call, code, reason, "%s", message);
  call_respond (call, code, NULL);
  return code;
}

/* The final batch completed (successfully or not): report the call and release it. */
static void
call_complete (gn_rpc_call *call)
{
  gn_rpc_server *server = call->server;

  if (server->observer != NULL) {
    grpc_status_code status = call->status;
    if (call->cancelled)
      status = remaining_ms (call->deadline) <= 0 ? GRPC_STATUS_DEADLINE_EXCEEDED
                                                  : GRPC_STATUS_CANCELLED;
    gn_rpc_call_report report = {
      .service = call->method != NULL ? call->method->service.log_name : "",
      .method = gn_rpc_call_method (call),
      .request_id = call->request_id,
      .status = status,
      .queue_ms = (double)(call->started_us - call->received_us) / 1000.0,
      .handler_ms = (double)(call->finished_us - call->started_us) / 1000.0,
    };
    gn_log_set_service (report.service[0] != '\0' ? report.service : NULL);
    gn_log_set_request_id (call->request_id);
    server->observer (server->observer_data, &report);
    gn_log_set_service (NULL);
    gn_log_set_request_id (NULL);
  }
  call_free (call);
}

/* "authorization: Bearer <token>" is verified when an authenticator is installed; other
 * schemes, or no header, leave the call unauthenticated for the handler to judge. */
static bool
call_authenticate (gn_rpc_call *call)
{
  gn_rpc_server *server = call->server;
  static const char bearer[] = "Bearer ";

  if (server->authenticator == NULL || call->authorization == NULL
      || g_ascii_strncasecmp (call->authorization, bearer, strlen (bearer)) != 0)
    return true;
  const char *token = call->authorization + strlen (bearer);
  while (*token == ' ')
    token++;
  char user_id[64] = "";
  if (*token == '\0' || !server->authenticator (server->authenticator_data, token, user_id))
    return false;
  user_id[sizeof user_id - 1] = '\0';
  memcpy (call->user_id, user_id, sizeof user_id);
  call->authenticated = true;
  return true;
}

/* Server: the read side of client-streaming calls. */

static void
reader_init (gn_rpc_reader *reader, gn_rpc_call *call)
{
  memset (reader, 0, sizeof *reader);
  reader->kind = TAG_STREAM_READ;
  reader->call = call;
  reader->scratch = gn_arena_new ();
  g_mutex_init (&reader->lock);
  g_cond_init (&reader->cond);
}

static void
reader_clear (gn_rpc_reader *reader)
{
  if (reader->payload != NULL)
    grpc_byte_buffer_destroy (reader->payload);
  gn_arena_free (reader->scratch);
  g_mutex_clear (&reader->lock);
  g_cond_clear (&reader->cond);
}

/* On the completion-queue thread: hand the outcome to the worker waiting in reader_run_op. */
static void
reader_batch_completed (gn_rpc_reader *reader, bool success)
{
  g_mutex_lock (&reader->lock);
  reader->batch_done = true;
  reader->batch_success = success;
  g_cond_signal (&reader->cond);
  g_mutex_unlock (&reader->lock);
}

/* Starts a one-op batch on the stream and waits for its completion.  No timeout is needed:
 * gRPC completes every batch of a call that is cancelled or whose deadline passes, and server
 * shutdown cancels every call. */
static bool
reader_run_op (gn_rpc_reader *reader, const grpc_op *op)
{
  grpc_call_error error = grpc_call_start_batch (reader->call->call, op, 1, reader, NULL);
  if (error != GRPC_CALL_OK) {
    gn_error ("rpc %s: cannot start a stream batch (call error %d)", reader->call->path,
              (int)error);
    return false;
  }
  g_mutex_lock (&reader->lock);
  while (!reader->batch_done)
    g_cond_wait (&reader->cond, &reader->lock);
  reader->batch_done = false;
  bool success = reader->batch_success;
  g_mutex_unlock (&reader->lock);
  return success;
}

static int
reader_break (gn_rpc_reader *reader, grpc_status_code code, const char *reason, const char *message)
{
  reader->broken = true;
  reader->broken_code = code;
  reader->broken_reason = reason;
  reader->broken_message = message;
  return -1;
}

int
gn_rpc_reader_next (gn_rpc_reader *reader, ProtobufCMessage **message)
{
  g_return_val_if_fail (reader != NULL && message != NULL, -1);

  gn_rpc_call *call = reader->call;
  grpc_op op;

  *message = NULL;
  if (reader->broken)
    return -1;
  if (reader->ended)
    return 0;

  gn_arena_reset (reader->scratch);
  memset (&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &reader->payload;
  if (!reader_run_op (reader, &op))
    return reader_break (reader, GRPC_STATUS_CANCELLED, NULL, "stream broken");

  if (reader->payload == NULL) {
    /* Half-close or cancellation: the probe described in the top comment decides. */
    call_set_initial_metadata (call);
    call->initial_metadata_sent = true;
    memset (&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    op.data.send_initial_metadata.count = 1;
    op.data.send_initial_metadata.metadata = call->initial_metadata;
    if (!reader_run_op (reader, &op))
      return reader_break (reader, GRPC_STATUS_CANCELLED, NULL, "stream broken");
    reader->ended = true;
    return 0;
  }

  /* The received buffer goes before decoding: a large part is then held twice at most (flat and
   * decoded), not three times. */
  grpc_slice slice;
  g_autoptr (GError) error = NULL;
  bool flattened = buffer_flatten (reader->payload, &slice);
  grpc_byte_buffer_destroy (reader->payload);
  reader->payload = NULL;
  if (flattened) {
    *message = unpack_request (call->method->descriptor->input, slice, reader->scratch, &error);
    grpc_slice_unref (slice);
  }
  if (*message == NULL)
    return reader_break (reader, GRPC_STATUS_INVALID_ARGUMENT, gn_pb_error_reason (error),
                         error != NULL ? gn_arena_strdup (call->arena, error->message)
                                       : "malformed request");
  return 1;
}

/* Runs the handler on the current thread (completion-queue thread or worker) and responds. */
static void
call_run (gn_rpc_call *call)
{
  const rpc_method *method = call->method;
  ProtobufCMessage *response = NULL;
  grpc_status_code code;
  gn_rpc_reader stream_reader;
  gn_rpc_reader *reader = NULL;

  call->started_us = g_get_monotonic_time ();
  gn_log_set_service (method->service.log_name);
  gn_log_set_request_id (call->request_id);

  if (remaining_ms (call->deadline) <= 0)
    code = gn_rpc_call_fail (call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline_exceeded",
                             "deadline passed before the call ran");
  else if (!call_authenticate (call))
    code = gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "invalid_token",
                             "invalid or expired access token");
  else {
    if (method->streaming) {
      reader = &stream_reader;
      reader_init (reader, call);
      code = method->entry.stream_handler (call, reader, &response);
      if (reader->broken)
        code = gn_rpc_call_fail (call, reader->broken_code, reader->broken_reason, "%s",
                                 reader->broken_message);
    } else
      code = method->entry.handler (call, call->request, &response);
    if (code == GRPC_STATUS_OK
        && (response == NULL || response->descriptor != method->descriptor->output)) {
      gn_error ("rpc %s: handler returned OK without a %s response", call->path,
                method->descriptor->output->name);
      code = gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
    }
  }
  call->finished_us = g_get_monotonic_time ();
  call_respond (call, code, response);
  /* Only now: the response may point into the last message. */
  if (reader != NULL)
    reader_clear (reader);

  gn_log_set_service (NULL);
  gn_log_set_request_id (NULL);
}

static void
call_dispatch (gn_rpc_call *call)
{
  gn_rpc_server *server = call->server;

  if (call->method == NULL) {
    gn_rpc_call_fail (call, GRPC_STATUS_UNIMPLEMENTED, "unknown_method", "unknown method %s",
                      call->path);
    call_respond (call, GRPC_STATUS_UNIMPLEMENTED, NULL);
    return;
  }
  /* A stream's handler reads its messages itself, and always on a worker: the reads block. */
  if (!call->method->streaming) {
    g_autoptr (GError) error = NULL;
    grpc_slice slice;
    if (call->payload != NULL && buffer_flatten (call->payload, &slice)) {
      call->request = unpack_request (call->method->descriptor->input, slice, call->arena, &error);
      grpc_slice_unref (slice);
    }
    if (call->request == NULL) {
      call_fail_respond (call, GRPC_STATUS_INVALID_ARGUMENT, gn_pb_error_reason (error),
                         error != NULL ? error->message : "malformed request");
      return;
    }
    grpc_byte_buffer_destroy (call->payload);
    call->payload = NULL;

    if (!(call->method->entry.flags & GN_RPC_BLOCKING)) {
      call_run (call);
      return;
    }
  }
  worker_pool *pool = call->method->pool;
  g_mutex_lock (&server->lock);
  if (g_queue_get_length (&pool->queue) >= (guint)server->options.queue_max) {
    g_mutex_unlock (&server->lock);
    call_fail_respond (call, GRPC_STATUS_RESOURCE_EXHAUSTED, "overloaded",
                       "server overloaded, try again later");
    return;
  }
  g_queue_push_tail (&pool->queue, call);
  g_cond_signal (&pool->work_cond);
  g_mutex_unlock (&server->lock);
}

/* Server: request slots and threads. */

static void
slot_arm (request_slot *slot)
{
  gn_rpc_server *server = slot->cq->server;
  grpc_call_error error;

  /* gRPC insists on a NULL payload pointer for methods registered with PAYLOAD_NONE. */
  if (slot->method != NULL)
    error = grpc_server_request_registered_call (
        server->grpc, slot->method->registered, &slot->call, &slot->deadline, &slot->metadata,
        slot->method->streaming ? NULL : &slot->payload, slot->cq->cq, slot->cq->cq, slot);
  else
    error = grpc_server_request_call (server->grpc, &slot->call, &slot->details, &slot->metadata,
                                      slot->cq->cq, slot->cq->cq, slot);
  if (error != GRPC_CALL_OK)
    gn_error ("rpc: cannot arm a request slot (call error %d)", (int)error);
}

static void
slot_fired (request_slot *slot, bool success)
{
  gn_rpc_server *server = slot->cq->server;

  if (!success)
    return; /* the server is shutting down */
  gn_rpc_call *call = call_new_from_slot (slot);
  if (!g_atomic_int_get (&server->stopping))
    slot_arm (slot);
  call_dispatch (call);
}

static gpointer
cq_thread_main (gpointer data)
{
  cq_thread *self = data;
  gn_rpc_server *server = self->server;

  for (;;) {
    grpc_event event
        = grpc_completion_queue_next (self->cq, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
    if (event.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (event.type != GRPC_OP_COMPLETE)
      continue;
    switch (*(tag_kind *)event.tag) {
      case TAG_REQUEST_SLOT:
        slot_fired (event.tag, event.success);
        break;
      case TAG_CALL:
        call_complete (event.tag);
        break;
      case TAG_STREAM_READ:
        reader_batch_completed (event.tag, event.success);
        break;
      case TAG_SERVER_SHUTDOWN:
        g_mutex_lock (&server->lock);
        server->shutdown_notified = true;
        g_cond_broadcast (&server->state_cond);
        g_mutex_unlock (&server->lock);
        break;
    }
  }
  return NULL;
}

static gpointer
worker_main (gpointer data)
{
  worker_pool *pool = data;
  gn_rpc_server *server = pool->server;

  g_mutex_lock (&server->lock);
  for (;;) {
    while (g_queue_is_empty (&pool->queue) && !server->workers_stop)
      g_cond_wait (&pool->work_cond, &server->lock);
    gn_rpc_call *call = g_queue_pop_head (&pool->queue);
    if (call == NULL)
      break;
    bool cancelling = server->cancelling;
    g_mutex_unlock (&server->lock);
    if (cancelling) {
      call->started_us = call->finished_us = g_get_monotonic_time ();
      call_fail_respond (call, GRPC_STATUS_UNAVAILABLE, "shutting_down", "server is shutting down");
    } else
      call_run (call);
    g_mutex_lock (&server->lock);
  }
  g_mutex_unlock (&server->lock);
  return NULL;
}

/* Server: public API. */

static void
worker_pool_free (gpointer data)
{
  worker_pool *pool = data;
  g_cond_clear (&pool->work_cond);
  g_free (pool->threads);
  g_free (pool);
}

/* The pool of a service, created on its first registration. */
static worker_pool *
pool_for (gn_rpc_server *server, const gn_rpc_service *service)
{
  for (guint i = 0; i < server->pools->len; i++) {
    worker_pool *pool = server->pools->pdata[i];
    if (pool->descriptor == service->descriptor)
      return pool;
  }
  worker_pool *pool = g_new0 (worker_pool, 1);
  pool->descriptor = service->descriptor;
  pool->server = server;
  g_snprintf (pool->name, sizeof pool->name, "rpc-%s",
              service->log_name != NULL ? service->log_name : "worker");
  g_queue_init (&pool->queue);
  g_cond_init (&pool->work_cond);
  g_ptr_array_add (server->pools, pool);
  return pool;
}

static void
rpc_method_free (gpointer data)
{
  rpc_method *method = data;
  g_free (method->path);
  g_free (method);
}

gn_rpc_server *
gn_rpc_server_new (const gn_rpc_server_options *options)
{
  gn_rpc_server *server = g_new0 (gn_rpc_server, 1);
  gn_rpc_server_options defaults
      = { .cq_threads = 2, .slots_per_method = 4, .workers = 8, .queue_max = 1024 };

  if (options != NULL) {
    if (options->cq_threads > 0)
      defaults.cq_threads = options->cq_threads;
    if (options->slots_per_method > 0)
      defaults.slots_per_method = options->slots_per_method;
    if (options->workers > 0)
      defaults.workers = options->workers;
    if (options->queue_max > 0)
      defaults.queue_max = options->queue_max;
  }
  server->options = defaults;
  server->methods = g_ptr_array_new_with_free_func (rpc_method_free);
  server->pools = g_ptr_array_new_with_free_func (worker_pool_free);
  server->shutdown_tag = TAG_SERVER_SHUTDOWN;
  g_mutex_init (&server->lock);
  g_cond_init (&server->state_cond);

  grpc_init ();
  /* A second process must not silently share our TCP port (SO_REUSEPORT is on by default). */
  grpc_arg args[] = {
    { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0 },
    { .type = GRPC_ARG_INTEGER,
      .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
      .value.integer = MAX_MESSAGE_BYTES },
  };
  grpc_channel_args channel_args = { .num_args = G_N_ELEMENTS (args), .args = args };
  server->grpc = grpc_server_create (&channel_args, NULL);

  server->cqs = g_new0 (cq_thread, server->options.cq_threads);
  for (int i = 0; i < server->options.cq_threads; i++) {
    server->cqs[i].server = server;
    server->cqs[i].cq = grpc_completion_queue_create_for_next (NULL);
    grpc_server_register_completion_queue (server->grpc, server->cqs[i].cq, NULL);
  }
  return server;
}

void
gn_rpc_server_set_authenticator (gn_rpc_server *server, gn_rpc_authenticator fn, void *data)
{
  g_return_if_fail (!server->started);
  server->authenticator = fn;
  server->authenticator_data = data;
}

void
gn_rpc_server_set_observer (gn_rpc_server *server, gn_rpc_observer fn, void *data)
{
  g_return_if_fail (!server->started);
  server->observer = fn;
  server->observer_data = data;
}

gboolean
gn_rpc_server_add_service (gn_rpc_server *server, const gn_rpc_service *service, GError **error)
{
  g_return_val_if_fail (service != NULL && service->descriptor != NULL, FALSE);
  g_return_val_if_fail (service->methods != NULL, FALSE);

  if (server->started) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 "cannot add service %s: the server is already running", service->descriptor->name);
    return FALSE;
  }
  /* Check the whole table first so a failure registers nothing. */
  for (const gn_rpc_method *entry = service->methods; entry->name != NULL; entry++) {
    if (protobuf_c_service_descriptor_get_method_by_name (service->descriptor, entry->name) == NULL
        || (entry->handler == NULL) == (entry->stream_handler == NULL)) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "service %s has no method %s (or not exactly one handler for it)",
                   service->descriptor->name, entry->name);
      return FALSE;
    }
  }
  worker_pool *pool = pool_for (server, service);
  for (const gn_rpc_method *entry = service->methods; entry->name != NULL; entry++) {
    rpc_method *method = g_new0 (rpc_method, 1);
    method->pool = pool;
    method->service = *service;
    method->entry = *entry;
    method->descriptor
        = protobuf_c_service_descriptor_get_method_by_name (service->descriptor, entry->name);
    method->path = g_strdup_printf ("/%s/%s", service->descriptor->name, entry->name);
    method->streaming = entry->stream_handler != NULL;
    method->registered = grpc_server_register_method (
        server->grpc, method->path, NULL,
        method->streaming ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    if (method->registered == NULL) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "cannot register %s twice", method->path);
      rpc_method_free (method);
      return FALSE;
    }
    g_ptr_array_add (server->methods, method);
  }
  return TRUE;
}

gboolean
gn_rpc_server_listen (gn_rpc_server *server, const char *address, int *bound_port, GError **error)
{
  g_return_val_if_fail (address != NULL, FALSE);

  if (server->started) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 "cannot listen on %s: the server is already running", address);
    return FALSE;
  }
  grpc_server_credentials *credentials = grpc_insecure_server_credentials_create ();
  int port = grpc_server_add_http2_port (server->grpc, address, credentials);
  grpc_server_credentials_release (credentials);
  server->listening = true;
  if (port == 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                 "cannot listen on %s (address in use or invalid)", address);
    return FALSE;
  }
  if (bound_port != NULL)
    *bound_port = port;
  return TRUE;
}

gboolean
gn_rpc_server_start (gn_rpc_server *server, GError **error)
{
  const gn_rpc_server_options *options = &server->options;

  if (server->started || server->shut_down) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "the server was already started");
    return FALSE;
  }
  grpc_server_start (server->grpc);
  server->started = true;

  size_t per_cq = (server->methods->len + 1) * (size_t)options->slots_per_method;
  server->slot_count = per_cq * (size_t)options->cq_threads;
  server->slots = g_new0 (request_slot, server->slot_count);
  for (size_t i = 0; i < server->slot_count; i++) {
    request_slot *slot = &server->slots[i];
    size_t method_index = (i % per_cq) / (size_t)options->slots_per_method;
    slot->kind = TAG_REQUEST_SLOT;
    slot->cq = &server->cqs[i / per_cq];
    slot->method
        = method_index < server->methods->len ? server->methods->pdata[method_index] : NULL;
    grpc_call_details_init (&slot->details);
    grpc_metadata_array_init (&slot->metadata);
    slot_arm (slot);
  }

  for (int i = 0; i < options->cq_threads; i++) {
    char name[32];
    snprintf (name, sizeof name, "rpc-cq-%d", i);
    server->cqs[i].thread = g_thread_new (name, cq_thread_main, &server->cqs[i]);
  }
  for (guint p = 0; p < server->pools->len; p++) {
    worker_pool *pool = server->pools->pdata[p];
    pool->threads = g_new0 (GThread *, options->workers);
    for (int i = 0; i < options->workers; i++) {
      char name[40];
      snprintf (name, sizeof name, "%s-%d", pool->name, i);
      pool->threads[pool->n_threads++] = g_thread_new (name, worker_main, pool);
    }
  }
  return TRUE;
}

/* Before start there are no completion-queue threads: wait for the notification here. */
static void
shutdown_unstarted (gn_rpc_server *server)
{
  grpc_completion_queue *cq = server->cqs[0].cq;

  grpc_server_shutdown_and_notify (server->grpc, cq, &server->shutdown_tag);
  for (;;) {
    grpc_event event = grpc_completion_queue_next (cq, deadline_after_ms (10000), NULL);
    if (event.type == GRPC_QUEUE_TIMEOUT) {
      gn_error ("rpc: server shutdown was not confirmed within 10 s");
      break;
    }
    if (event.type == GRPC_OP_COMPLETE && event.tag == &server->shutdown_tag)
      break;
  }
}

static void
shutdown_running (gn_rpc_server *server, int grace_ms)
{
  gint64 grace_end = g_get_monotonic_time () + (gint64)MAX (grace_ms, 0) * 1000;

  grpc_server_shutdown_and_notify (server->grpc, server->cqs[0].cq, &server->shutdown_tag);
  g_mutex_lock (&server->lock);
  while (!server->shutdown_notified)
    if (!g_cond_wait_until (&server->state_cond, &server->lock, grace_end))
      break;
  if (!server->shutdown_notified) {
    server->cancelling = true;
    g_mutex_unlock (&server->lock);
    grpc_server_cancel_all_calls (server->grpc);
    g_mutex_lock (&server->lock);
  }
  while (!server->shutdown_notified || server->live_calls > 0)
    g_cond_wait (&server->state_cond, &server->lock);
  server->workers_stop = true;
  for (guint p = 0; p < server->pools->len; p++)
    g_cond_broadcast (&((worker_pool *)server->pools->pdata[p])->work_cond);
  g_mutex_unlock (&server->lock);

  for (guint p = 0; p < server->pools->len; p++) {
    worker_pool *pool = server->pools->pdata[p];
    for (int i = 0; i < pool->n_threads; i++)
      g_thread_join (pool->threads[i]);
    pool->n_threads = 0;
  }
}

void
gn_rpc_server_shutdown (gn_rpc_server *server, int grace_ms)
{
  if (server->shut_down)
    return;
  server->shut_down = true;
  g_atomic_int_set (&server->stopping, 1);

  if (server->started)
    shutdown_running (server, grace_ms);
  else if (server->listening)
    shutdown_unstarted (server);
  grpc_server_destroy (server->grpc);
  server->grpc = NULL;

  for (int i = 0; i < server->options.cq_threads; i++) {
    cq_thread *cq = &server->cqs[i];
    grpc_completion_queue_shutdown (cq->cq);
    if (cq->thread != NULL)
      g_thread_join (cq->thread);
    else
      while (grpc_completion_queue_next (cq->cq, gpr_inf_future (GPR_CLOCK_REALTIME), NULL).type
             != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy (cq->cq);
    cq->thread = NULL;
    cq->cq = NULL;
  }
}

void
gn_rpc_server_free (gn_rpc_server *server)
{
  if (server == NULL)
    return;
  gn_rpc_server_shutdown (server, 0);

  for (size_t i = 0; i < server->slot_count; i++) {
    grpc_call_details_destroy (&server->slots[i].details);
    grpc_metadata_array_destroy (&server->slots[i].metadata);
  }
  g_free (server->slots);
  g_free (server->cqs);
  g_ptr_array_free (server->methods, TRUE);
  g_ptr_array_free (server->pools, TRUE);
  g_mutex_clear (&server->lock);
  g_cond_clear (&server->state_cond);
  g_free (server);
  grpc_shutdown_blocking ();
}

/* Client. */

struct gn_rpc_client {
  char *target;
  grpc_channel *channel;
};

static GMutex clients_lock;
static GHashTable *clients; /* target -> gn_rpc_client * */

gn_rpc_client *
gn_rpc_client_get (const char *target)
{
  g_return_val_if_fail (target != NULL, NULL);

  g_mutex_lock (&clients_lock);
  if (clients == NULL) {
    grpc_init ();
    clients = g_hash_table_new (g_str_hash, g_str_equal);
  }
  gn_rpc_client *client = g_hash_table_lookup (clients, target);
  if (client == NULL) {
    /* gRPC backs off up to two minutes between reconnects by default; a restarted service
     * should be reachable again within a second.  (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays
     * at its default: it is also the connect timeout, and a busy server needs that long.) */
    grpc_arg args[] = {
      { .type = GRPC_ARG_INTEGER,
        .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
        .value.integer = MAX_MESSAGE_BYTES },
      { .type = GRPC_ARG_INTEGER,
        .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
        .value.integer = 100 },
      { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, .value.integer = 1000 },
    };
    grpc_channel_args channel_args = { .num_args = G_N_ELEMENTS (args), .args = args };
    grpc_channel_credentials *credentials = grpc_insecure_credentials_create ();

    client = g_new0 (gn_rpc_client, 1);
    client->target = g_strdup (target);
    client->channel = grpc_channel_create (target, credentials, &channel_args);
    grpc_channel_credentials_release (credentials);
    g_hash_table_insert (clients, client->target, client);
  }
  g_mutex_unlock (&clients_lock);
  return client;
}

void
gn_rpc_clients_shutdown (void)
{
  g_mutex_lock (&clients_lock);
  if (clients != NULL) {
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init (&iter, clients);
    while (g_hash_table_iter_next (&iter, NULL, &value)) {
      gn_rpc_client *client = value;
      grpc_channel_destroy (client->channel);
      g_free (client->target);
      g_free (client);
    }
    g_hash_table_destroy (clients);
    clients = NULL;
    grpc_shutdown_blocking ();
  }
  g_mutex_unlock (&clients_lock);
}

static grpc_status_code status_set (gn_rpc_status *status, grpc_status_code code, const char *fmt,
                                    ...) __attribute__ ((format (printf, 3, 4)));

static grpc_status_code
status_set (gn_rpc_status *status, grpc_status_code code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  status->code = code;
  int length = vsnprintf (status->message, sizeof status->message, fmt, ap);
  va_end (ap);
  /* Cut short, the message may end inside a character; the gateway puts it in JSON. */
  const char *valid_end;
  if (length >= (int)sizeof status->message && !g_utf8_validate (status->message, -1, &valid_end))
    status->message[valid_end - status->message] = '\0';
  return code;
}

static void
metadata_add (grpc_metadata *metadata, size_t *count, const char *key, const char *value)
{
  if (value == NULL)
    return;
  metadata[*count].key = grpc_slice_from_static_string (key);
  metadata[*count].value = grpc_slice_from_copied_string (value);
  (*count)++;
}

/* The metadata a client call sends: the parent's, unless given explicitly. */
static size_t
client_metadata (const gn_rpc_call_options *options, grpc_metadata metadata[3])
{
  gn_rpc_call *parent = options->parent;
  size_t count = 0;

  metadata_add (metadata, &count, "x-request-id",
                parent != NULL ? parent->request_id : options->request_id);
  metadata_add (metadata, &count, "traceparent",
                parent != NULL ? parent->traceparent : options->traceparent);
  metadata_add (metadata, &count, "authorization",
                options->authorization != NULL || parent == NULL ? options->authorization
                                                                 : parent->authorization);
  return count;
}

static grpc_call *
client_call_new (gn_rpc_client *client, grpc_completion_queue *cq, grpc_slice path,
                 const gn_rpc_call_options *options)
{
  gn_rpc_call *parent = options->parent;
  int timeout_ms = options->timeout_ms > 0 ? options->timeout_ms : DEFAULT_TIMEOUT_MS;

  /* With a parent, gRPC takes the earlier of the two deadlines and cancels with the parent. */
  return grpc_channel_create_call (client->channel, parent != NULL ? parent->call : NULL,
                                   parent != NULL ? GRPC_PROPAGATE_DEFAULTS : 0, cq, path, NULL,
                                   deadline_after_ms (timeout_ms), NULL);
}

/* The server's status, details and x-error-code trailer, as the caller sees them. */
static void
status_from_answer (gn_rpc_status *status, const gn_rpc_client *client,
                    const ProtobufCServiceDescriptor *service, grpc_status_code code,
                    grpc_slice details, const grpc_metadata_array *trailing_metadata)
{
  size_t length;
  const char *reason = metadata_lookup (trailing_metadata, "x-error-code", &length);
  if (reason != NULL)
    snprintf (status->reason, sizeof status->reason, "%.*s", (int)length, reason);
  const char *message = (const char *)GRPC_SLICE_START_PTR (details);
  int message_length = (int)GRPC_SLICE_LENGTH (details);
  if (code == GRPC_STATUS_UNAVAILABLE && reason == NULL)
    status_set (status, code, "%s unavailable at %s: %.*s", service->short_name, client->target,
                message_length, message);
  else
    status_set (status, code, "%.*s", message_length, message);
}

/* Decodes an OK answer's message into the arena; a missing or undecodable one is INTERNAL. */
static void
response_decode (gn_rpc_status *status, const gn_rpc_client *client,
                 const ProtobufCMethodDescriptor *method, const char *path,
                 grpc_byte_buffer *payload, ProtobufCMessage **response, gn_arena *arena)
{
  if (payload != NULL)
    *response = unpack_message (method->output, payload, arena);
  if (*response == NULL)
    status_set (status, GRPC_STATUS_INTERNAL, "malformed response from %s at %s", path,
                client->target);
}

/* A unary call in flight: everything its one batch points at lives here until it is finished. */
struct gn_rpc_pending {
  gn_rpc_client *client;
  const ProtobufCServiceDescriptor *service;
  const ProtobufCMethodDescriptor *method;
  gn_rpc_status refused; /* set when the call was refused before it existed (call == NULL) */
  char *path;
  grpc_slice path_slice;
  grpc_completion_queue *cq; /* pluck, this call's only */
  grpc_call *call;
  grpc_metadata metadata[3];
  size_t metadata_count;
  grpc_metadata_array initial_metadata;
  grpc_metadata_array trailing_metadata;
  grpc_byte_buffer *request_payload;
  grpc_byte_buffer *response_payload;
  grpc_status_code code;
  grpc_slice details;
  const char *error_string;
  grpc_op ops[6];
};

gn_rpc_pending *
gn_rpc_unary_start (gn_rpc_client *client, const ProtobufCServiceDescriptor *service,
                    const char *method_name, const ProtobufCMessage *request,
                    const gn_rpc_call_options *options)
{
  static const gn_rpc_call_options no_options = { 0 };
  gn_rpc_pending *pending = g_new0 (gn_rpc_pending, 1);

  pending->details = grpc_empty_slice ();
  /* Refused like an unknown method rather than half-built: finish must always get a call it
   * can report on and free (it used to pluck a completion queue that was never made). */
  if (client == NULL || service == NULL || method_name == NULL || request == NULL) {
    status_set (&pending->refused, GRPC_STATUS_INVALID_ARGUMENT, "gn_rpc_unary_start: no %s given",
                client == NULL    ? "client"
                : service == NULL ? "service"
                : request == NULL ? "request"
                                  : "method");
    return pending;
  }
  if (options == NULL)
    options = &no_options;
  pending->client = client;
  pending->service = service;
  pending->method = protobuf_c_service_descriptor_get_method_by_name (service, method_name);
  if (pending->method == NULL) {
    status_set (&pending->refused, GRPC_STATUS_UNIMPLEMENTED, "%s has no method %s", service->name,
                method_name);
    return pending;
  }
  if (request->descriptor != pending->method->input) {
    status_set (&pending->refused, GRPC_STATUS_INVALID_ARGUMENT, "%s/%s takes %s, not %s",
                service->name, method_name, pending->method->input->name,
                request->descriptor->name);
    return pending;
  }

  pending->path = g_strdup_printf ("/%s/%s", service->name, pending->method->name);
  pending->path_slice = grpc_slice_from_copied_string (pending->path);
  pending->cq = grpc_completion_queue_create_for_pluck (NULL);
  pending->call = client_call_new (client, pending->cq, pending->path_slice, options);
  pending->metadata_count = client_metadata (options, pending->metadata);
  grpc_metadata_array_init (&pending->initial_metadata);
  grpc_metadata_array_init (&pending->trailing_metadata);
  pending->request_payload = pack_message (request);

  grpc_op *ops = pending->ops;
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = pending->metadata_count;
  ops[0].data.send_initial_metadata.metadata = pending->metadata;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = pending->request_payload;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &pending->initial_metadata;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &pending->response_payload;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &pending->trailing_metadata;
  ops[5].data.recv_status_on_client.status = &pending->code;
  ops[5].data.recv_status_on_client.status_details = &pending->details;
  ops[5].data.recv_status_on_client.error_string = &pending->error_string;

  grpc_call_error call_error
      = grpc_call_start_batch (pending->call, ops, G_N_ELEMENTS (pending->ops), ops, NULL);
  if (call_error != GRPC_CALL_OK)
    status_set (&pending->refused, GRPC_STATUS_INTERNAL,
                "cannot start a call to %s (call error %d)", pending->path, (int)call_error);
  return pending;
}

grpc_status_code
gn_rpc_unary_finish (gn_rpc_pending *pending, ProtobufCMessage **response, gn_arena *arena,
                     gn_rpc_status *status)
{
  gn_rpc_status ignored_status;

  if (status == NULL)
    status = &ignored_status;
  memset (status, 0, sizeof *status);
  *response = NULL;

  if (pending->refused.code != GRPC_STATUS_OK) {
    *status = pending->refused;
  } else {
    grpc_event event = grpc_completion_queue_pluck (pending->cq, pending->ops,
                                                    gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
    if (event.type != GRPC_OP_COMPLETE || !event.success) {
      status_set (status, GRPC_STATUS_INTERNAL, "call to %s did not complete", pending->path);
    } else {
      status_from_answer (status, pending->client, pending->service, pending->code,
                          pending->details, &pending->trailing_metadata);
      if (pending->code == GRPC_STATUS_OK)
        response_decode (status, pending->client, pending->method, pending->path,
                         pending->response_payload, response, arena);
    }
  }

  if (pending->call != NULL) {
    for (size_t i = 0; i < pending->metadata_count; i++)
      grpc_slice_unref (pending->metadata[i].value);
    grpc_metadata_array_destroy (&pending->initial_metadata);
    grpc_metadata_array_destroy (&pending->trailing_metadata);
    grpc_byte_buffer_destroy (pending->request_payload);
    if (pending->response_payload != NULL)
      grpc_byte_buffer_destroy (pending->response_payload);
    gpr_free ((void *)pending->error_string);
    grpc_call_unref (pending->call);
    grpc_completion_queue_shutdown (pending->cq);
    while (
        grpc_completion_queue_pluck (pending->cq, NULL, gpr_inf_future (GPR_CLOCK_REALTIME), NULL)
            .type
        != GRPC_QUEUE_SHUTDOWN)
      ;
    grpc_completion_queue_destroy (pending->cq);
    grpc_slice_unref (pending->path_slice);
  }
  grpc_slice_unref (pending->details);
  g_free (pending->path);
  g_free (pending);
  return status->code;
}

grpc_status_code
gn_rpc_unary (gn_rpc_client *client, const ProtobufCServiceDescriptor *service,
              const char *method_name, const ProtobufCMessage *request, ProtobufCMessage **response,
              gn_arena *arena, const gn_rpc_call_options *options, gn_rpc_status *status)
{
  g_return_val_if_fail (response != NULL && arena != NULL, GRPC_STATUS_INTERNAL);
  return gn_rpc_unary_finish (gn_rpc_unary_start (client, service, method_name, request, options),
                              response, arena, status);
}

/* Client streams. */

struct gn_rpc_stream {
  gn_rpc_client *client;
  const ProtobufCServiceDescriptor *service;
  const ProtobufCMethodDescriptor *method; /* NULL: refused before a call existed */
  char *path;
  grpc_slice path_slice;
  grpc_completion_queue *cq; /* pluck */
  grpc_call *call;
  grpc_metadata metadata[3];
  size_t metadata_count;

  /* Filled by the answer batch. */
  grpc_metadata_array initial_metadata;
  grpc_metadata_array trailing_metadata;
  grpc_byte_buffer *response_payload;
  grpc_status_code code;
  grpc_slice details;
  const char *error_string;

  /* Batches in flight; the address of each flag is its batch's tag. */
  bool open_pending;
  bool answer_pending;
  bool send_pending;
  bool close_pending;

  bool failed;  /* no more sends */
  bool refused; /* failed here, not at the server: `local` is the result */
  gn_rpc_status local;
};

static void stream_refuse (gn_rpc_stream *stream, grpc_status_code code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/* Fails the stream on this side (the first reason wins) and cancels the call, so that every
 * batch in flight completes. */
static void
stream_refuse (gn_rpc_stream *stream, grpc_status_code code, const char *fmt, ...)
{
  if (!stream->refused) {
    va_list ap;
    va_start (ap, fmt);
    stream->local.code = code;
    vsnprintf (stream->local.message, sizeof stream->local.message, fmt, ap);
    va_end (ap);
    stream->refused = true;
  }
  stream->failed = true;
  if (stream->call != NULL)
    grpc_call_cancel (stream->call, NULL);
}

static bool
stream_start (gn_rpc_stream *stream, const grpc_op *ops, size_t count, bool *pending)
{
  grpc_call_error error = grpc_call_start_batch (stream->call, ops, count, pending, NULL);
  if (error != GRPC_CALL_OK) {
    stream_refuse (stream, GRPC_STATUS_INTERNAL, "cannot start a batch of %s (call error %d)",
                   stream->path, (int)error);
    return false;
  }
  *pending = true;
  return true;
}

/* Waits until `deadline` for the batch tagged `pending`; false if it has not completed. */
static bool
stream_wait (gn_rpc_stream *stream, bool *pending, gpr_timespec deadline, bool *success)
{
  grpc_event event = grpc_completion_queue_pluck (stream->cq, pending, deadline, NULL);
  if (event.type != GRPC_OP_COMPLETE)
    return false;
  *pending = false;
  if (success != NULL)
    *success = event.success;
  return true;
}

static void
stream_drain (gn_rpc_stream *stream)
{
  bool *batches[] = { &stream->open_pending, &stream->send_pending, &stream->close_pending,
                      &stream->answer_pending };
  for (size_t i = 0; i < G_N_ELEMENTS (batches); i++)
    if (*batches[i])
      stream_wait (stream, batches[i], gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
}

static void
stream_free (gn_rpc_stream *stream)
{
  for (size_t i = 0; i < stream->metadata_count; i++)
    grpc_slice_unref (stream->metadata[i].value);
  grpc_metadata_array_destroy (&stream->initial_metadata);
  grpc_metadata_array_destroy (&stream->trailing_metadata);
  if (stream->response_payload != NULL)
    grpc_byte_buffer_destroy (stream->response_payload);
  grpc_slice_unref (stream->details);
  gpr_free ((void *)stream->error_string);
  if (stream->call != NULL)
    grpc_call_unref (stream->call);
  if (stream->cq != NULL) {
    grpc_completion_queue_shutdown (stream->cq);
    while (grpc_completion_queue_pluck (stream->cq, NULL, gpr_inf_future (GPR_CLOCK_REALTIME), NULL)
               .type
           != GRPC_QUEUE_SHUTDOWN)
      ;
    grpc_completion_queue_destroy (stream->cq);
  }
  grpc_slice_unref (stream->path_slice);
  g_free (stream->path);
  g_free (stream);
}

gn_rpc_stream *
gn_rpc_stream_open (gn_rpc_client *client, const ProtobufCServiceDescriptor *service,
                    const char *method_name, const gn_rpc_call_options *options)
{
  static const gn_rpc_call_options no_options = { 0 };
  grpc_op ops[3];

  g_return_val_if_fail (client != NULL && service != NULL && method_name != NULL, NULL);
  if (options == NULL)
    options = &no_options;

  gn_rpc_stream *stream = g_new0 (gn_rpc_stream, 1);
  stream->client = client;
  stream->service = service;
  stream->path_slice = grpc_empty_slice ();
  stream->details = grpc_empty_slice ();
  grpc_metadata_array_init (&stream->initial_metadata);
  grpc_metadata_array_init (&stream->trailing_metadata);
  stream->method = protobuf_c_service_descriptor_get_method_by_name (service, method_name);
  if (stream->method == NULL) {
    stream_refuse (stream, GRPC_STATUS_UNIMPLEMENTED, "%s has no method %s", service->name,
                   method_name);
    return stream;
  }
  stream->path = g_strdup_printf ("/%s/%s", service->name, stream->method->name);
  stream->path_slice = grpc_slice_from_copied_string (stream->path);
  stream->cq = grpc_completion_queue_create_for_pluck (NULL);
  stream->call = client_call_new (client, stream->cq, stream->path_slice, options);
  stream->metadata_count = client_metadata (options, stream->metadata);

  memset (ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = stream->metadata_count;
  ops[0].data.send_initial_metadata.metadata = stream->metadata;
  if (!stream_start (stream, ops, 1, &stream->open_pending))
    return stream;

  memset (ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[0].data.recv_initial_metadata.recv_initial_metadata = &stream->initial_metadata;
  ops[1].op = GRPC_OP_RECV_MESSAGE;
  ops[1].data.recv_message.recv_message = &stream->response_payload;
  ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[2].data.recv_status_on_client.trailing_metadata = &stream->trailing_metadata;
  ops[2].data.recv_status_on_client.status = &stream->code;
  ops[2].data.recv_status_on_client.status_details = &stream->details;
  ops[2].data.recv_status_on_client.error_string = &stream->error_string;
  stream_start (stream, ops, 3, &stream->answer_pending);
  return stream;
}

gboolean
gn_rpc_stream_send (gn_rpc_stream *stream, const ProtobufCMessage *message)
{
  g_return_val_if_fail (stream != NULL && message != NULL, FALSE);

  if (stream->failed)
    return FALSE;
  if (message->descriptor != stream->method->input) {
    stream_refuse (stream, GRPC_STATUS_INVALID_ARGUMENT, "%s/%s takes %s, not %s",
                   stream->service->name, stream->method->name, stream->method->input->name,
                   message->descriptor->name);
    return FALSE;
  }
  /* Once the server answered (it may refuse an upload before reading all of it) or the call
   * ended otherwise, sending more is pointless. */
  if (stream_wait (stream, &stream->answer_pending, gpr_inf_past (GPR_CLOCK_MONOTONIC), NULL)) {
    stream->failed = true;
    return FALSE;
  }

  grpc_byte_buffer *payload = pack_message (message);
  grpc_op op;
  bool sent = false;
  memset (&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_MESSAGE;
  op.data.send_message.send_message = payload;
  if (stream_start (stream, &op, 1, &stream->send_pending))
    stream_wait (stream, &stream->send_pending, gpr_inf_future (GPR_CLOCK_REALTIME), &sent);
  grpc_byte_buffer_destroy (payload);
  if (!sent)
    stream->failed = true;
  return sent;
}

grpc_status_code
gn_rpc_stream_finish (gn_rpc_stream *stream, ProtobufCMessage **response, gn_arena *arena,
                      gn_rpc_status *status)
{
  gn_rpc_status ignored_status;

  g_return_val_if_fail (stream != NULL && response != NULL && arena != NULL, GRPC_STATUS_INTERNAL);
  if (status == NULL)
    status = &ignored_status;
  memset (status, 0, sizeof *status);
  *response = NULL;

  if (!stream->failed) {
    grpc_op op;
    memset (&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    stream_start (stream, &op, 1, &stream->close_pending);
  }
  stream_drain (stream);
  if (stream->refused)
    *status = stream->local;
  else {
    status_from_answer (status, stream->client, stream->service, stream->code, stream->details,
                        &stream->trailing_metadata);
    if (stream->code == GRPC_STATUS_OK)
      response_decode (status, stream->client, stream->method, stream->path,
                       stream->response_payload, response, arena);
  }
  stream_free (stream);
  return status->code;
}

void
gn_rpc_stream_cancel (gn_rpc_stream *stream)
{
  if (stream == NULL)
    return;
  if (stream->call != NULL)
    grpc_call_cancel (stream->call, NULL);
  stream_drain (stream);
  stream_free (stream);
}
