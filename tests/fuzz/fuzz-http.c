/* fuzz-http.c - the whole HTTP request path of the gateway, fed as a client sends it.
 *
 * Set-up, once per process: the real gateway (gn_gateway_start: libmicrohttpd, the router
 * with every API v1 route, bearer-token checking with a fixed key, CORS for one origin) on a
 * free loopback port, configured like a node whose gRPC services are down: every service
 * address is a unix socket in a scratch folder where nothing listens, so each call fails at
 * once with UNAVAILABLE and the route answers 503.  Everything a handler does before its first
 * call runs for real: request line, headers, query strings, routing, body limits, JSON bodies
 * of every route, multipart through libmicrohttpd's post processor and our form fields,
 * the presigned PUT, base64 uploads.
 *
 * Each input is written as raw bytes to a new TCP connection, which is then half-closed; the
 * answer is read until the server closes.  Checked: whatever comes back is HTTP, and no answer
 * is a 500 (a 500 here means a handler hit a case it did not expect).  ASan/UBSan watch the
 * server's threads as well, so a memory error anywhere on the way is a crash of this process.
 *
 * Seeds (corpus/http/) are one request per route; their bearer token is signed with the fixed
 * key below and expires in 2100.  FUZZ_HTTP_PRINT=1 prints every answer. */
/* The server's threads allocate and free on their own schedule, so libFuzzer's leak check
 * after each input (mallocs != frees) would stop the world after nearly every request, and
 * libraries keep per-thread state of the finished connection threads (OpenSSL's error queue,
 * through libjwt) until exit.  Leaks of the HTTP layer are the job of the unit and
 * integration tests under tools/test-sanitized. */
#define FUZZ_NO_LEAK_CHECK
#include "fuzz.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "gateway.h"
#include "log.h"

/* Long enough for a 503 after a failed gRPC call; an answer slower than this is a hang. */
#define READ_TIMEOUT_MS 10000

static gn_config *config;
static gn_token_key key;
static gn_gateway *gateway;
static struct sockaddr_in server_address;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  GError *error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("fuzz-http-XXXXXX", NULL);

  gn_log_set_level (GN_LOG_ERROR);
  memset (key.secret, 0x5a, sizeof key.secret);
  config = gn_config_new_default ();
  gn_config_set_data_dir (config, dir);
  /* A free port, CORS for one origin (so that its code runs too) and a short rpc deadline;
   * rate limits that the fuzzer's one address never meets (the admission code still runs);
   * a short idle timeout, since a request whose body is shorter than it said is only ended by
   * it (libmicrohttpd's epoll loop does not see the FIN that came with it);
   * everything else is a real node's default, limits and routes included. */
  if (!gn_config_set (config, "gateway.port", "0", &error)
      || !gn_config_set (config, "gateway.cors_origins", "https://app.example", &error)
      || !gn_config_set (config, "rpc.deadline_ms", "2000", &error)
      || !gn_config_set (config, "gateway.idle_timeout_s", "2", &error)
      || !gn_config_set (config, "ratelimit.auth_burst", "1000000", &error)
      || !gn_config_set (config, "ratelimit.write_burst", "1000000", &error)) {
    g_printerr ("fuzz-http: %s\n", error->message);
    abort ();
  }
  gateway = gn_gateway_start (config, &key, NULL, NULL, NULL, &error);
  if (gateway == NULL) {
    g_printerr ("fuzz-http: the gateway does not start: %s\n", error->message);
    abort ();
  }
  server_address.sin_family = AF_INET;
  server_address.sin_port = htons ((uint16_t)gn_gateway_port (gateway));
  server_address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  return 0;
}

/* Writes as much of the input as the server takes: it may answer and close early (413). */
static void
send_input (int fd, const uint8_t *data, size_t size)
{
  size_t sent = 0;
  while (sent < size) {
    ssize_t n = send (fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    sent += (size_t)n;
  }
}

/* True once the answer holds at least one whole response: its headers and as many body bytes
 * as its Content-Length says (other answers end with the connection). */
static bool
answer_is_complete (const GString *answer)
{
  const char *end = strstr (answer->str, "\r\n\r\n");
  if (end == NULL)
    return false;
  size_t header_len = (size_t)(end - answer->str) + 4;
  /* 204 and 304 have no body, whatever their headers say. */
  if (answer->len > 12
      && (strncmp (answer->str + 8, " 204", 4) == 0 || strncmp (answer->str + 8, " 304", 4) == 0))
    return true;
  for (const char *p = answer->str; p < end; p++) {
    if ((p == answer->str || p[-1] == '\n')
        && g_ascii_strncasecmp (p, "Content-Length:", 15) == 0) {
      guint64 length = g_ascii_strtoull (p + 15, NULL, 10);
      return answer->len - header_len >= length;
    }
  }
  return false;
}

/* Reads until the server closes the connection, or has sent a whole response and then nothing
 * for SETTLE_MS: libmicrohttpd's epoll loop can miss a FIN that arrives with the request, and
 * then keeps the connection until its idle timeout, which is no fault.  False if neither
 * happens within READ_TIMEOUT_MS. */
#define SETTLE_MS 50

static bool
read_answer (int fd, GString *answer)
{
  char buffer[16384];
  gint64 deadline = g_get_monotonic_time () + READ_TIMEOUT_MS * 1000;
  for (;;) {
    bool complete = answer_is_complete (answer);
    gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;
    if (left_ms <= 0)
      return complete;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int ready = poll (&pfd, 1, complete ? SETTLE_MS : (int)left_ms);
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready <= 0)
      return complete;
    ssize_t n = recv (fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return true; /* closed, or reset after an early answer */
    g_string_append_len (answer, buffer, n);
  }
}

/* Every status line in the answer (keep-alive may carry several) must not say 500. */
static void
check_answer (const GString *answer)
{
  if (answer->len == 0)
    return; /* libmicrohttpd drops some malformed requests without a word */
  FUZZ_ASSERT (g_str_has_prefix (answer->str, "HTTP/1."));
  for (const char *p = answer->str; (p = strstr (p, "HTTP/1.")) != NULL; p++)
    if (p == answer->str || p[-1] == '\n') {
      if (strncmp (p + 8, " 500", 4) == 0)
        g_printerr ("fuzz-http: the gateway answered 500:\n%s\n", answer->str);
      FUZZ_ASSERT (strncmp (p + 8, " 500", 4) != 0);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_ASSERT (fd >= 0);
  FUZZ_ASSERT (connect (fd, (struct sockaddr *)&server_address, sizeof server_address) == 0);
  send_input (fd, data, size);
  shutdown (fd, SHUT_WR);
  GString *answer = g_string_new (NULL);
  bool closed = read_answer (fd, answer);
  close (fd);
  if (!closed)
    g_printerr ("fuzz-http: no end of the answer within %d ms; so far:\n%s\n", READ_TIMEOUT_MS,
                answer->str);
  FUZZ_ASSERT (closed);
  /* For a person replaying one input: FUZZ_HTTP_PRINT=1 fuzz-http crash-... */
  if (g_getenv ("FUZZ_HTTP_PRINT") != NULL)
    g_printerr ("%s\n", answer->str);
  check_answer (answer);
  g_string_free (answer, TRUE);
  return 0;
}
