/* metrics.h - the process's Prometheus metrics.
 *
 * Fed by the two observer hooks (every HTTP request through gn_metrics_observe_http, every
 * finished gRPC call through gn_metrics_observe_rpc) and rendered in the Prometheus text
 * exposition format by gn_metrics_render for GET /metrics.  Labels are bounded by design:
 * route patterns (never raw paths), methods, status codes. */
#pragma once

#include <stddef.h>

#include "http.h"
#include "rpc.h"

/* Matches gn_http_observer / gn_rpc_observer; data is unused. */
void gn_metrics_observe_http (void *data, const gn_http_report *report);
void gn_metrics_observe_rpc (void *data, const gn_rpc_call_report *report);

/* g_free the result. */
char *gn_metrics_render (size_t *len);

/* Forgets every series (tests). */
void gn_metrics_reset (void);
