/* redis.h - Redis access through hiredis: per-thread connections.
 *
 * URL forms: "unix:/path/redis.sock", "redis://host:port[/db]".  gn_redis_thread_conn()
 * behaves like gn_pg_thread_conn(): one connection per thread, reconnect after an error. */
#pragma once

#include <hiredis/hiredis.h>
#include <glib.h>

redisContext *gn_redis_connect (const char *url, GError **error);
redisContext *gn_redis_thread_conn (const char *url, GError **error);
/* Marks the thread's connection broken so the next call reconnects (after an I/O error). */
void gn_redis_thread_conn_reset (const char *url);
/* PING; FALSE with a readable error if Redis does not answer PONG. */
gboolean gn_redis_ping (redisContext *ctx, GError **error);
