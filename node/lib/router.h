/* router.h - method + path routing for the gateway and the CDN listener.
 *
 * Patterns are literal segments and {name} parameters ("/api/v1/users/{user_id}/posts").  A
 * parameter matches one non-empty segment; its value is percent-decoded into the arena.
 * Literal segments win over parameters at the same position, so "/api/v1/users/me" and
 * "/api/v1/users/{id}" can coexist.  A path that matches a pattern under another method
 * yields GN_ROUTE_METHOD_NOT_ALLOWED with the allowed methods listed (for 405 and CORS).
 * A trailing slash is ignored; "//" and segments "." or ".." never match.  Bounds: a path of
 * more than GN_ROUTE_PATH_MAX bytes matches nothing, and a parameter matches only valid UTF-8
 * without NUL of at most GN_ROUTE_PARAM_MAX bytes once decoded. */
#pragma once

#include <stddef.h>
#include <stdbool.h>

#include "arena.h"

typedef struct gn_http_request gn_http_request;
typedef void (*gn_http_handler) (gn_http_request *request, void *data);
/* A route's check before its body is read (see gn_route.precheck): true to go on, false after
 * answering with gn_http_respond_*(). */
typedef bool (*gn_http_precheck) (gn_http_request *request, void *data);

enum {
  GN_ROUTE_AUTH_REQUIRED = 1 << 0, /* 401 unless a valid bearer token is present */
  GN_ROUTE_AUTH_OPTIONAL = 1 << 1, /* verified if present (401 if present but invalid) */
  GN_ROUTE_RAW_BODY = 1 << 2,      /* body is not JSON (uploads): no JSON content-type check */
  GN_ROUTE_MULTIPART = 1 << 3,     /* multipart/form-data: the "file" part is spooled to disk,
                                    * other fields are read with gn_http_form_field */
};

#define GN_ROUTE_MAX_PARAMS 4
#define GN_ROUTE_PATH_MAX 2048
#define GN_ROUTE_PARAM_MAX 512

typedef struct {
  const char *method;  /* "GET", ... */
  const char *pattern; /* as given to gn_router_add */
  gn_http_handler handler;
  void *data;
  unsigned flags;
  size_t max_body; /* 0 = the server's default */
  /* Optional: runs once the headers are in and the token was checked, before any body byte is
   * read, and may block (a call to the service that can tell whether an upload URL is valid).
   * When it answers, the body is not read at all. */
  gn_http_precheck precheck;
  const char *name; /* for logs and metrics: the pattern */
} gn_route;

typedef struct {
  const char *name;
  const char *value;
} gn_route_param;

typedef enum {
  GN_ROUTE_MATCH,
  GN_ROUTE_NOT_FOUND,
  GN_ROUTE_METHOD_NOT_ALLOWED,
} gn_route_result;

typedef struct gn_router gn_router;

gn_router *gn_router_new (void);
void gn_router_free (gn_router *router);
/* Returns the stored route so callers can tune flags/max_body. Patterns are copied. */
gn_route *gn_router_add (gn_router *router, const char *method, const char *pattern,
                         gn_http_handler handler, void *data, unsigned flags);

/* On GN_ROUTE_MATCH sets *route and params (values allocated from arena).  On
 * GN_ROUTE_METHOD_NOT_ALLOWED writes e.g. "GET, POST" into allow (if non-NULL).  HEAD matches
 * GET routes. */
gn_route_result gn_router_match (const gn_router *router, const char *method, const char *path,
                                 gn_arena *arena, const gn_route **route,
                                 gn_route_param params[GN_ROUTE_MAX_PARAMS], size_t *n_params,
                                 char *allow, size_t allow_size);

/* For CORS preflights: false if no route matches path under any method; otherwise true, with
 * every method the path accepts written into allow as for 405. */
bool gn_router_allowed_methods (const gn_router *router, const char *path, char *allow,
                                size_t allow_size);
