/* errors.h - how the gateway turns a failed gRPC call into an HTTP answer.
 *
 * One table maps gRPC status codes to the HTTP status codes of API v1 (400, 401, 403, 404,
 * 409, 429, 501, 503, 504, else 500).  The service's reason ("x-error-code", e.g.
 * "username_taken") becomes the error's machine-readable code; its message is shown to people,
 * except for failures that would leak internals, which are logged and answered generically. */
#pragma once

#include <grpc/status.h>

#include "http.h"
#include "rpc.h"

/* The HTTP status for a gRPC status code. */
int gn_gateway_http_status (grpc_status_code code);

/* Answers request with the HTTP form of status (through gn_http_respond_error, so plain text
 * or problem+json as the client asked).  service: the callee's name for messages ("auth"). */
void gn_gateway_respond_rpc_error (gn_http_request *request, const gn_rpc_status *status,
                                   const char *service);
