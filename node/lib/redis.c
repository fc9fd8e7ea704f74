/* redis.c - Redis connections through hiredis (see redis.h).
 *
 * Like pg.c, each thread owns its connections (a GPrivate list keyed by URL), because a
 * hiredis context is not thread-safe and pooling across threads would add locking to every
 * command.  A context whose `err` is set after a command is dropped on the next lookup. */
#include "redis.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define GN_REDIS_ERROR (gn_redis_error_quark ())
static G_DEFINE_QUARK (gn - redis - error - quark, gn_redis_error)

    typedef struct {
  char *url;
  redisContext *ctx;
} thread_redis;

static void
thread_redis_free (gpointer data)
{
  thread_redis *tr = data;
  g_clear_pointer (&tr->ctx, redisFree);
  g_free (tr->url);
  g_free (tr);
}

static void
thread_list_free (gpointer data)
{
  g_ptr_array_free (data, TRUE);
}

static GPrivate thread_list_key = G_PRIVATE_INIT (thread_list_free);

redisContext *
gn_redis_connect (const char *url, GError **error)
{
  struct timeval timeout = { 5, 0 };
  redisContext *ctx = NULL;
  int db = 0;

  if (g_str_has_prefix (url, "unix:")) {
    ctx = redisConnectUnixWithTimeout (url + 5, timeout);
  } else if (g_str_has_prefix (url, "redis://")) {
    g_autoptr (GUri) uri = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);
    if (uri == NULL || g_uri_get_host (uri) == NULL) {
      g_set_error (error, GN_REDIS_ERROR, 0, "Redis URL %s is not valid", url);
      return NULL;
    }
    int port = g_uri_get_port (uri) > 0 ? g_uri_get_port (uri) : 6379;
    const char *path = g_uri_get_path (uri);
    if (path != NULL && path[0] == '/' && path[1] != '\0')
      db = atoi (path + 1);
    ctx = redisConnectWithTimeout (g_uri_get_host (uri), port, timeout);
  } else {
    g_set_error (error, GN_REDIS_ERROR, 0,
                 "Redis URL %s is not valid (use unix:/path or redis://host:port/db)", url);
    return NULL;
  }
  if (ctx == NULL || ctx->err) {
    g_set_error (error, GN_REDIS_ERROR, 0, "Redis at %s: %s", url,
                 ctx != NULL ? ctx->errstr : "out of memory");
    if (ctx != NULL)
      redisFree (ctx);
    return NULL;
  }
  redisSetTimeout (ctx, timeout);
  if (db > 0) {
    redisReply *reply = redisCommand (ctx, "SELECT %d", db);
    gboolean ok = reply != NULL && reply->type == REDIS_REPLY_STATUS;
    if (reply != NULL)
      freeReplyObject (reply);
    if (!ok) {
      g_set_error (error, GN_REDIS_ERROR, 0, "Redis at %s: cannot select database %d", url, db);
      redisFree (ctx);
      return NULL;
    }
  }
  return ctx;
}

static thread_redis *
thread_lookup (const char *url, gboolean create)
{
  GPtrArray *list = g_private_get (&thread_list_key);
  if (list == NULL) {
    if (!create)
      return NULL;
    list = g_ptr_array_new_with_free_func (thread_redis_free);
    g_private_set (&thread_list_key, list);
  }
  for (guint i = 0; i < list->len; i++) {
    thread_redis *tr = list->pdata[i];
    if (strcmp (tr->url, url) == 0)
      return tr;
  }
  if (!create)
    return NULL;
  thread_redis *tr = g_new0 (thread_redis, 1);
  tr->url = g_strdup (url);
  g_ptr_array_add (list, tr);
  return tr;
}

redisContext *
gn_redis_thread_conn (const char *url, GError **error)
{
  thread_redis *tr = thread_lookup (url, TRUE);
  if (tr->ctx != NULL && tr->ctx->err)
    g_clear_pointer (&tr->ctx, redisFree);
  if (tr->ctx == NULL)
    tr->ctx = gn_redis_connect (url, error);
  return tr->ctx;
}

void
gn_redis_thread_conn_reset (const char *url)
{
  thread_redis *tr = thread_lookup (url, FALSE);
  if (tr != NULL)
    g_clear_pointer (&tr->ctx, redisFree);
}

gboolean
gn_redis_ping (redisContext *ctx, GError **error)
{
  redisReply *reply = redisCommand (ctx, "PING");
  gboolean ok = reply != NULL && reply->type == REDIS_REPLY_STATUS
                && g_ascii_strcasecmp (reply->str, "PONG") == 0;
  if (!ok)
    g_set_error (error, GN_REDIS_ERROR, 0, "Redis did not answer PING: %s",
                 reply == NULL ? ctx->errstr : (reply->str ? reply->str : "unexpected reply"));
  if (reply != NULL)
    freeReplyObject (reply);
  return ok;
}
