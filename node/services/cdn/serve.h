/* serve.h - media files by signed, expiring URLs, over HTTP: the routes, on the gateway's
 * router (one port for a whole node) and on the CDN's own listener when cdn.port asks for one.
 *
 * Routes: GET and HEAD /media/{id}/{file}, the object with storage key "media/<id>/<file>",
 * given ?expires=&signature= as sign.h makes them.  Answers, in order of the checks:
 *   404  the path is not a storage key, or the object does not exist (after the signature)
 *   403  no signature, a wrong one (code "invalid_signature"), or an expired one ("url_expired")
 *   304  If-None-Match matches the ETag (weak comparison, lists, "*"), or, without
 *        If-None-Match, If-Modified-Since is not older than the file
 *   206  one satisfiable range of Range: bytes=a-b, a-, -n (GET only; If-Range honoured), with
 *        Content-Range
 *   416  a range past the end, with Content-Range: bytes * / size
 *   200  otherwise, the whole file; a Range with several ranges also gets the whole file (a
 *        multipart/byteranges answer buys nothing for media players, which ask for one range)
 * Every 200/206/304 carries a strong ETag (the sha256 in a content-addressed name such as
 * "medium-<64 hex>.jpg", else size and mtime), Last-Modified, Accept-Ranges and
 * Cache-Control: a year and "immutable" for content-addressed names, else the time left on the
 * signature.  The bytes go out with sendfile (gn_http_respond_file).
 *
 * Where the bytes come from: backends with local files (fs) are served from their files in
 * place; for the others (s3) a gn_cdn_cache keeps local copies, and since a miss waits on the
 * object store, the CDN's own listener then runs a thread per connection instead of the epoll
 * pool (the gateway's handlers may wait anyway: they call services). */
#pragma once

#include <glib.h>

#include "cache.h"
#include "router.h"
#include "sign.h"
#include "storage.h"

/* What serving needs: the key URLs are verified with and where the bytes are. */
typedef struct {
  const gn_cdn_key *key;
  gn_storage *storage;
  gn_cdn_cache *cache; /* NULL: the backend has local files */
} gn_cdn_media;

/* Adds the media routes to router; media (and what it points to) must outlive the router. */
void gn_cdn_add_routes (gn_router *router, const gn_cdn_media *media);

typedef struct {
  const char *address;
  int port; /* 0 picks one */
  int threads;
  const char *cors_origins;
  const gn_cdn_media *media;
} gn_cdn_server_options;

typedef struct gn_cdn_server gn_cdn_server;

/* A listener of its own, serving the media routes only.  media must outlive the server. */
gn_cdn_server *gn_cdn_server_start (const gn_cdn_server_options *options, GError **error);
int gn_cdn_server_port (gn_cdn_server *server);
void gn_cdn_server_stop (gn_cdn_server *server);
