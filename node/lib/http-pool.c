/* http-pool.c - the worker pool of servers whose handlers block (the gateway's wait on gRPC).
 *
 * The event thread that has a request's headers (for a route's precheck) or its whole body
 * (for the handler) suspends the connection and queues the request (http_submit); a worker
 * runs the precheck or handler, which answers into the request's held response, moves the
 * request to its next phase and resumes the connection; back on the event thread,
 * libmicrohttpd calls the access handler again and http.c queues the held answer.  A full queue
 * (queue_max) is answered 503 with Retry-After at once.  Servers whose handlers never block
 * (the CDN on local files) run prechecks and handlers inline on the event thread instead. */
#include "http-private.h"

/* Runs on a worker, or inline on servers without a pool.  An answer is held (not queued). */
void
http_run_precheck (request_context *context)
{
  gn_http_request *request = &context->request;

  context->hold_answer = true;
  if (request->route->precheck (request, request->route->data) && request->status == 0)
    context->hold_answer = false;
  else
    context->precheck_refused = true;
}

void
http_run_handler (request_context *context)
{
  gn_http_request *request = &context->request;

  request->route->handler (request, request->route->data);
  http_discard_spool (context);
  if (request->status == 0) {
    gn_error ("handler of %s %s answered nothing", request->method, request->route->name);
    gn_http_respond_error (request, 500, "internal_error", "Internal error");
  }
}

gpointer
http_worker_main (gpointer data)
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
      http_run_precheck (context);
      context->phase = PHASE_PRECHECK_DONE;
    } else {
      context->hold_answer = true;
      http_run_handler (context);
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

void
http_refuse_busy (request_context *context)
{
  gn_http_add_header (&context->request, "Retry-After", "1");
  http_respond_error_message (&context->request, 503, "overloaded",
                              context->server->stopping ? "The server is shutting down"
                                                        : "The server is busy: try again shortly");
}

/* Hands the precheck or the handler to the worker pool: the connection is suspended (the event
 * thread goes on with other connections) until the worker resumes it.  A full queue, or a
 * server that is stopping, is answered 503 at once. */
enum MHD_Result
http_submit (request_context *context, request_phase phase)
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
    http_refuse_busy (context);
    return http_answered_before_body (context);
  }
  http_refuse_busy (context);
  return context->queue_failed ? MHD_NO : MHD_YES;
}

/* The connection came back from the pool (or closed on the way). */
void
http_back_from_pool (request_context *context)
{
  if (!context->in_pool)
    return;
  context->in_pool = false;
  g_atomic_int_dec_and_test (&context->server->in_pool);
}
