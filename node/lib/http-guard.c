/* http-guard.c - every open connection: the per-address cap and the header timeout.
 *
 * libmicrohttpd tells us when a connection opens and closes (http_notify_connection); we keep each
 * in a list with its address and its state.  The accept policy refuses a connection whose
 * address already holds max_per_ip (trusted proxies are exempt: every client behind them shares
 * their address).  With several event threads, each accepting on its own, the cap can be
 * passed by at most one connection per event thread.
 *
 * libmicrohttpd's connection timeout is an inactivity timeout: a client that sends a header
 * byte every few seconds would hold its connection forever.  The reaper thread bounds the time
 * from a request's first byte to its complete headers.  Between requests a connection waits
 * (an idle keep-alive connection costs its libmicrohttpd memory and a list entry, not a
 * thread, and the inactivity timeout closes it); every header_timeout/2 the reaper reads the
 * socket's received byte count (TCP_INFO): once bytes have come in while the headers are
 * still not complete header_timeout later, it shuts the socket down, and libmicrohttpd's
 * event thread closes the connection.  Headers are therefore closed at 1 to 1.5 x header_timeout
 * after their first byte.  shutdown() from another thread is safe here because
 * http_notify_connection reports the close, under connections_lock, before the descriptor is closed
 * and reused. */
#include "http-private.h"

struct tracked_connection {
  tracked_connection *prev, *next;
  int fd;
  char *address;      /* counted in per_ip under this key; NULL for a trusted proxy */
  bool in_request;    /* headers complete, answer not yet sent */
  bool shut;          /* the reaper shut it down */
  guint64 bytes_seen; /* bytes received when the reaper last looked, or when it began waiting */
  gint64 arriving_us; /* when the reaper first saw bytes of headers still incomplete; 0: not */
  gint64 next_check_us;
};

static guint64
bytes_received (int fd)
{
  struct tcp_info info;
  socklen_t len = sizeof info;

  memset (&info, 0, sizeof info);
  if (getsockopt (fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
    return 0;
  return info.tcpi_bytes_received;
}

/* The address of a sockaddr as text (the per_ip key), or NULL if it is not IP. */
static char *
address_key (const struct sockaddr *address, char buffer[INET6_ADDRSTRLEN])
{
  if (address == NULL)
    return NULL;
  if (address->sa_family == AF_INET)
    return (char *)inet_ntop (AF_INET, &((const struct sockaddr_in *)address)->sin_addr, buffer,
                              INET6_ADDRSTRLEN);
  if (address->sa_family == AF_INET6)
    return (char *)inet_ntop (AF_INET6, &((const struct sockaddr_in6 *)address)->sin6_addr, buffer,
                              INET6_ADDRSTRLEN);
  return NULL;
}

static bool
sockaddr_is_trusted (gn_http_server *server, const struct sockaddr *address)
{
  g_autoptr (GInetAddress) inet = NULL;

  if (server->trusted_proxies == NULL)
    return false;
  inet = http_sockaddr_to_inet (address);
  return http_address_is_trusted (server, inet);
}

enum MHD_Result
http_accept_policy (void *cls, const struct sockaddr *address, socklen_t address_len)
{
  gn_http_server *server = cls;
  char buffer[INET6_ADDRSTRLEN];
  const char *key = address_key (address, buffer);
  unsigned count;

  if (key == NULL)
    return MHD_YES;
  g_mutex_lock (&server->connections_lock);
  count = GPOINTER_TO_UINT (g_hash_table_lookup (server->per_ip, key));
  g_mutex_unlock (&server->connections_lock);
  if (count < server->max_per_ip || sockaddr_is_trusted (server, address))
    return MHD_YES;
  g_atomic_int_inc (&server->refused_per_ip);
  return MHD_NO;
}

void
http_notify_connection (void *cls, struct MHD_Connection *connection, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
  gn_http_server *server = cls;
  tracked_connection *tracked = *socket_context;

  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *fd
        = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *peer
        = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char buffer[INET6_ADDRSTRLEN];
    const char *key = address_key (peer != NULL ? peer->client_addr : NULL, buffer);

    tracked = g_new0 (tracked_connection, 1);
    tracked->fd = fd != NULL ? fd->connect_fd : -1;
    tracked->next_check_us = g_get_monotonic_time () + server->header_timeout_us / 2;
    if (key != NULL && !sockaddr_is_trusted (server, peer->client_addr))
      tracked->address = g_strdup (key);
    *socket_context = tracked;

    g_mutex_lock (&server->connections_lock);
    if (tracked->address != NULL) {
      guint count = GPOINTER_TO_UINT (g_hash_table_lookup (server->per_ip, tracked->address));
      g_hash_table_replace (server->per_ip, g_strdup (tracked->address),
                            GUINT_TO_POINTER (count + 1));
    }
    tracked->next = server->connections;
    if (server->connections != NULL)
      server->connections->prev = tracked;
    server->connections = tracked;
    g_mutex_unlock (&server->connections_lock);
    return;
  }

  if (tracked == NULL)
    return;
  *socket_context = NULL;
  g_mutex_lock (&server->connections_lock);
  if (tracked->address != NULL) {
    guint count = GPOINTER_TO_UINT (g_hash_table_lookup (server->per_ip, tracked->address));
    if (count <= 1)
      g_hash_table_remove (server->per_ip, tracked->address);
    else
      g_hash_table_replace (server->per_ip, g_strdup (tracked->address),
                            GUINT_TO_POINTER (count - 1));
  }
  if (tracked->prev != NULL)
    tracked->prev->next = tracked->next;
  else
    server->connections = tracked->next;
  if (tracked->next != NULL)
    tracked->next->prev = tracked->prev;
  g_mutex_unlock (&server->connections_lock);
  g_free (tracked->address);
  g_free (tracked);
}

/* A request's headers are complete (true), or its answer is done and the connection waits for
 * the next one (false). */
void
http_connection_in_request (gn_http_server *server, struct MHD_Connection *connection,
                            bool in_request)
{
  const union MHD_ConnectionInfo *info
      = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  tracked_connection *tracked = info != NULL ? info->socket_context : NULL;
  guint64 bytes = 0;

  if (tracked == NULL)
    return;
  if (!in_request)
    bytes = bytes_received (tracked->fd);
  g_mutex_lock (&server->connections_lock);
  tracked->in_request = in_request;
  if (!in_request) {
    tracked->bytes_seen = bytes;
    tracked->arriving_us = 0;
    tracked->next_check_us = g_get_monotonic_time () + server->header_timeout_us / 2;
  }
  g_mutex_unlock (&server->connections_lock);
}

/* Once a second: the header timeout (see above), and the counts of what was refused. */
static void
reap_slow_headers (gn_http_server *server)
{
  gint64 now = g_get_monotonic_time ();

  g_mutex_lock (&server->connections_lock);
  for (tracked_connection *c = server->connections; c != NULL; c = c->next) {
    guint64 bytes;

    if (c->in_request || c->shut || now < c->next_check_us)
      continue;
    if (c->arriving_us != 0) {
      shutdown (c->fd, SHUT_RDWR);
      c->shut = true;
      g_atomic_int_inc (&server->closed_slow);
      continue;
    }
    bytes = bytes_received (c->fd);
    if (bytes != c->bytes_seen) {
      c->arriving_us = now;
      c->next_check_us = now + server->header_timeout_us;
    } else {
      c->next_check_us = now + server->header_timeout_us / 2;
    }
    c->bytes_seen = bytes;
  }
  g_mutex_unlock (&server->connections_lock);
}

gpointer
http_reaper_main (gpointer data)
{
  gn_http_server *server = data;

  g_mutex_lock (&server->reaper_lock);
  while (!server->reaper_stop) {
    gint refused, closed, dropped, busy;

    g_cond_wait_until (&server->reaper_wake, &server->reaper_lock,
                       g_get_monotonic_time () + G_USEC_PER_SEC);
    if (server->reaper_stop)
      break;
    reap_slow_headers (server);
    gn_log_set_service (server->name);
    refused = g_atomic_int_exchange (&server->refused_per_ip, 0);
    closed = g_atomic_int_exchange (&server->closed_slow, 0);
    dropped = g_atomic_int_exchange (&server->mhd_log_dropped, 0);
    busy = g_atomic_int_exchange (&server->refused_busy, 0);
    g_atomic_int_set (&server->mhd_log_lines, 0);
    if (refused > 0)
      gn_warn ("refused %d connections: their address already had %u open", refused,
               server->max_per_ip);
    if (closed > 0)
      gn_warn ("closed %d connections whose request headers took longer than %d s", closed,
               (int)(server->header_timeout_us / G_USEC_PER_SEC));
    if (busy > 0)
      gn_warn ("answered %d requests 503: %u waiting for the %u workers already", busy,
               server->queue_max, server->n_workers);
    if (dropped > 0)
      gn_warn ("libmicrohttpd: %d more warnings not logged", dropped);
  }
  g_mutex_unlock (&server->reaper_lock);
  return NULL;
}
