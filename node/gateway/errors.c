/* errors.c - gRPC failures as HTTP answers (see errors.h).
 *
 * The mapping follows the usual gRPC-to-HTTP table (as in grpc-gateway), with the two
 * "precondition" flavours folded into 400 and both conflict flavours into 409, which are the
 * codes API v1's clients expect.  The code word of the answer is the service's reason when it
 * gave one, else a word per HTTP status.
 *
 * What a person gets to read: the service's message for client errors (4xx), which services
 * write for people ("username already taken"); a fixed "The <service> service is unavailable"
 * for 503/504 (the transport's text means nothing to them; a service that is only "busy" for
 * a moment adds Retry-After); and for any other 5xx only
 * "Internal error", because those messages can carry SQL errors, paths or addresses: the
 * details go to the log line, which carries the request id the client also received. */
#include "errors.h"

#include <string.h>

#include "log.h"

int
gn_gateway_http_status (grpc_status_code code)
{
  switch (code) {
    case GRPC_STATUS_OK:
      return 200;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE:
      return 400;
    case GRPC_STATUS_UNAUTHENTICATED:
      return 401;
    case GRPC_STATUS_PERMISSION_DENIED:
      return 403;
    case GRPC_STATUS_NOT_FOUND:
      return 404;
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_ABORTED:
      return 409;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
      return 429;
    case GRPC_STATUS_UNIMPLEMENTED:
      return 501;
    case GRPC_STATUS_UNAVAILABLE:
      return 503;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

static const char *
default_code (int http_status)
{
  switch (http_status) {
    case 400:
      return "invalid_request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 409:
      return "conflict";
    case 429:
      return "rate_limited";
    case 501:
      return "not_implemented";
    case 503:
      return "unavailable";
    case 504:
      return "timeout";
    default:
      return "internal_error";
  }
}

/* HTTP has words gRPC lacks: a few reasons name the exact status API v1 answers with. */
static const struct {
  const char *reason;
  int http_status;
} reason_statuses[] = {
  { "unsupported_media_type", 415 },
  { "file_too_large", 413 },
  /* A service out of a bounded resource for a moment (the password hash slots): not the
   * client's fault, so not 429; it may come back right after Retry-After. */
  { "busy", 503 },
};

void
gn_gateway_respond_rpc_error (gn_http_request *request, const gn_rpc_status *status,
                              const char *service)
{
  int http_status = gn_gateway_http_status (status->code);
  for (size_t i = 0; i < G_N_ELEMENTS (reason_statuses); i++)
    if (http_status < 500 && strcmp (status->reason, reason_statuses[i].reason) == 0)
      http_status = reason_statuses[i].http_status;
  const char *code = status->reason[0] != '\0' ? status->reason : default_code (http_status);
  const char *name = service != NULL ? service : "upstream";

  if (status->code == GRPC_STATUS_OK) {
    gn_error ("%s: an error answer was asked for a call that succeeded", name);
    gn_http_respond_error (request, 500, "internal_error", "Internal error");
    return;
  }

  if (http_status == 503 && strcmp (code, "busy") == 0) {
    gn_warn ("%s service busy: %s", name, status->message);
    gn_http_add_header (request, "Retry-After", "1");
    gn_http_respond_error (request, http_status, code, "The %s service is busy: try again", name);
  } else if (http_status == 503 || http_status == 504) {
    gn_warn ("%s service %s: %s", name, gn_rpc_status_name (status->code), status->message);
    gn_http_respond_error (request, http_status, code,
                           http_status == 503 ? "The %s service is unavailable"
                                              : "The %s service did not answer in time",
                           name);
  } else if (http_status == 501) {
    gn_warn ("%s service: %s", name, status->message);
    gn_http_respond_error (request, 501, code, "Not implemented by the %s service", name);
  } else if (http_status >= 500) {
    gn_error ("%s service failed: %s %s%s%s", name, gn_rpc_status_name (status->code),
              status->message, status->reason[0] ? " reason=" : "", status->reason);
    gn_http_respond_error (request, http_status, "internal_error", "Internal error");
  } else {
    gn_http_respond_error (request, http_status, code, "%s",
                           status->message[0] != '\0' ? status->message
                                                      : gn_http_status_title (http_status));
  }
}
