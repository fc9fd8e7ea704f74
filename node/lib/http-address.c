/* http-address.c - where a request comes from and which URL it used (see http-private.h).
 *
 * The client's address is the peer's, or, when the peer is one of the server's trusted proxies,
 * the rightmost untrusted hop of X-Forwarded-For.  The base URL is the configured public URL,
 * else X-Forwarded-Proto/-Host from a trusted proxy, else a Host header that can be a host
 * name, else the address the connection came in on. */
#include "http-private.h"

bool
http_address_is_trusted (gn_http_server *server, GInetAddress *address)
{
  if (server->trusted_proxies == NULL || address == NULL)
    return false;
  for (guint i = 0; i < server->trusted_proxies->len; i++)
    if (g_inet_address_mask_matches (server->trusted_proxies->pdata[i], address))
      return true;
  return false;
}

GInetAddress *
http_sockaddr_to_inet (const struct sockaddr *native)
{
  gsize len;
  g_autoptr (GSocketAddress) address = NULL;

  if (native == NULL)
    return NULL;
  if (native->sa_family == AF_INET)
    len = sizeof (struct sockaddr_in);
  else if (native->sa_family == AF_INET6)
    len = sizeof (struct sockaddr_in6);
  else
    return NULL;
  address = g_socket_address_new_from_native ((gpointer)native, len);
  if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address))
    return NULL;
  return g_object_ref (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address)));
}

/* X-Forwarded-For lists the client first and each proxy's peer after it: the client is the
 * rightmost address that is not itself a trusted proxy. */
static const char *
forwarded_client (request_context *context, const char *forwarded_for)
{
  g_auto (GStrv) hops = NULL;
  const char *client = NULL;
  guint n;

  if (forwarded_for == NULL || strlen (forwarded_for) > 1024)
    return NULL;
  hops = g_strsplit (forwarded_for, ",", 32);
  n = g_strv_length (hops);
  for (guint i = n; i-- > 0;) {
    g_autoptr (GInetAddress) hop = g_inet_address_new_from_string (g_strstrip (hops[i]));

    if (hop == NULL)
      break;
    client = gn_arena_strdup (context->request.arena, hops[i]);
    if (!http_address_is_trusted (context->server, hop))
      break;
  }
  return client;
}

void
http_resolve_client (request_context *context)
{
  gn_http_request *request = &context->request;
  const union MHD_ConnectionInfo *info
      = MHD_get_connection_info (request->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  g_autoptr (GInetAddress) peer = http_sockaddr_to_inet (info != NULL ? info->client_addr : NULL);
  g_autofree char *text = peer != NULL ? g_inet_address_to_string (peer) : NULL;
  const char *forwarded = NULL;

  request->client_ip = gn_arena_strdup (request->arena, text != NULL ? text : "unknown");
  context->from_trusted_proxy = http_address_is_trusted (context->server, peer);
  if (context->from_trusted_proxy)
    forwarded = forwarded_client (context, gn_http_header (request, "X-Forwarded-For"));
  if (forwarded != NULL)
    request->client_ip = forwarded;
}

/* A Host value we are willing to put into URLs: a name or address with an optional port. */
static bool
host_is_sane (const char *host)
{
  size_t n = 0;

  if (host == NULL)
    return false;
  for (; host[n] != '\0'; n++) {
    char c = host[n];

    if (n == 255
        || !(g_ascii_isalnum (c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
             || c == '_'))
      return false;
  }
  return n > 0;
}

/* The first element of a comma-separated header value, trimmed, from the arena. */
static char *
first_value (gn_arena *arena, const char *value)
{
  const char *end;

  if (value == NULL)
    return NULL;
  end = strchr (value, ',');
  return g_strstrip (end != NULL ? gn_arena_strndup (arena, value, (size_t)(end - value))
                                 : gn_arena_strdup (arena, value));
}

static const char *
local_host (gn_http_request *request)
{
  const union MHD_ConnectionInfo *info
      = MHD_get_connection_info (request->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  struct sockaddr_storage native;
  socklen_t len = sizeof native;
  g_autoptr (GInetAddress) address = NULL;
  g_autofree char *text = NULL;
  int port;

  if (info == NULL || getsockname (info->connect_fd, (struct sockaddr *)&native, &len) != 0)
    return "localhost";
  address = http_sockaddr_to_inet ((struct sockaddr *)&native);
  if (address == NULL)
    return "localhost";
  text = g_inet_address_to_string (address);
  port = native.ss_family == AF_INET6 ? ntohs (((struct sockaddr_in6 *)&native)->sin6_port)
                                      : ntohs (((struct sockaddr_in *)&native)->sin_port);
  if (g_inet_address_get_family (address) == G_SOCKET_FAMILY_IPV6)
    return gn_arena_printf (request->arena, "[%s]:%d", text, port);
  return gn_arena_printf (request->arena, "%s:%d", text, port);
}

const char *
gn_http_base_url (gn_http_request *request)
{
  request_context *context = context_of (request);
  const char *scheme = "http";
  const char *host = NULL;

  if (context->server->public_url != NULL)
    return context->server->public_url;
  if (context->from_trusted_proxy) {
    char *proto = first_value (request->arena, gn_http_header (request, "X-Forwarded-Proto"));
    char *forwarded_host
        = first_value (request->arena, gn_http_header (request, "X-Forwarded-Host"));

    if (proto != NULL && (g_ascii_strcasecmp (proto, "https") == 0))
      scheme = "https";
    if (host_is_sane (forwarded_host))
      host = forwarded_host;
  }
  if (host == NULL && host_is_sane (gn_http_header (request, MHD_HTTP_HEADER_HOST)))
    host = gn_http_header (request, MHD_HTTP_HEADER_HOST);
  if (host == NULL)
    host = local_host (request);
  return gn_arena_printf (request->arena, "%s://%s", scheme, host);
}
