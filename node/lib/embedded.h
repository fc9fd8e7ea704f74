/* embedded.h - a private PostgreSQL cluster and Redis inside the node's data folder.
 *
 * With no database/redis URL configured, generia-node runs its own servers:
 *   <data-dir>/postgres/    cluster (initdb on first start: UTF8, C.UTF-8, trust on the
 *                           unix socket only, no TCP listener)
 *   <data-dir>/redis/       redis.conf, appendonly file
 *   <data-dir>/run/         unix sockets (a short folder under /tmp when the path would pass
 *                           the 107-byte socket limit)
 * As root PostgreSQL runs as the "postgres" system user (initdb refuses root); the folders
 * are chowned to it.  gn_embedded_start() clears servers a dead node left, starts both as
 * children that die with the node, waits until both answer and fills in the URLs; from then on
 * a server that dies is restarted with back-off.  gn_embedded_stop() stops what it started
 * (PostgreSQL's fast shutdown, Redis saves) and frees it. */
#pragma once

#include <stdbool.h>
#include <glib.h>

typedef struct gn_embedded gn_embedded;

typedef struct {
  const char *data_dir;
  bool postgres;  /* start PostgreSQL */
  bool redis;     /* start Redis */
  bool ephemeral; /* tests: fsync off, Redis without persistence */
} gn_embedded_options;

gn_embedded *gn_embedded_start (const gn_embedded_options *options, GError **error);
/* libpq connection string ("host=/... port=... dbname=generia user=generia"), or NULL. */
const char *gn_embedded_database_url (gn_embedded *embedded);
/* "unix:/.../redis.sock", or NULL. */
const char *gn_embedded_redis_url (gn_embedded *embedded);
/* Stops the servers (bounded: clean stop, then harder signals) without freeing anything; safe
 * from any thread while the node runs, e.g. a shutdown watchdog before _exit(). */
void gn_embedded_halt (gn_embedded *embedded);
void gn_embedded_stop (gn_embedded *embedded);
