/* main.c - generia-node: runs the gateway and any subset of the services in one process.
 *
 *   generia-node serve   [options]   run the selected services until SIGTERM/SIGINT
 *   generia-node migrate [options]   bring every selected service's schema up to date, exit
 *
 * Start-up order: configuration (defaults < file < environment < flags); the embedded
 * PostgreSQL and Redis when no URLs are configured; migrations of the services run here; the
 * gRPC server with those services on their addresses; the first fetch of revoked sessions
 * (revocations.c, which both token checks consult); the gateway.  Shutdown runs the same
 * list backwards.
 *
 * Signals are blocked before any thread starts (gRPC's included), so only the signal thread's
 * sigwait() sees them.  The first SIGINT/SIGTERM asks the main thread to stop, and the signal
 * thread turns into a watchdog: in-flight gRPC calls get node.shutdown_grace_ms, and if the
 * whole shutdown has not finished node.shutdown_grace_ms + 5 s after the signal, or a second
 * SIGINT/SIGTERM arrives, the watchdog stops the embedded servers (cleanly, bounded) and ends
 * the process with status 1 without waiting for the rest. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>
#include <glib.h>

#include "config.h"
#include "embedded.h"
#include "failpoint.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "revocations.h"
#include "rpc.h"
#include "service.h"
#include "token.h"

/* How much longer than the gRPC grace a shutdown may take before the watchdog ends it. */
#define SHUTDOWN_MARGIN_MS 5000

/* Every service module compiled in; --services all means these plus the gateway. */
static const gn_service_module *const modules[] = {
  &gn_auth_module,
  &gn_cdn_module,
  &gn_media_module,
  &gn_post_module,
};

static const gn_service_module *
module_for (gn_service_id id)
{
  for (size_t i = 0; i < G_N_ELEMENTS (modules); i++)
    if (modules[i]->id == id)
      return modules[i];
  return NULL;
}

typedef struct {
  char *services;
  char *data_dir;
  char *config_file;
  int gateway_port;
  char *database_url;
  char *redis_url;
  char *log_level;
  char **settings;
  gboolean ephemeral;
  gboolean print_config;
} cli_options;

static gboolean
parse_cli (int *argc, char ***argv, const char *command, cli_options *cli, GError **error)
{
  cli->gateway_port = -1;
  GOptionEntry entries[] = {
    { "services", 's', 0, G_OPTION_ARG_STRING, &cli->services,
      "Services to run: all, or a comma list of auth,post,media,interaction,feed,cache,cdn,gateway",
      "LIST" },
    { "data-dir", 'd', 0, G_OPTION_ARG_FILENAME, &cli->data_dir,
      "Data folder (config, embedded databases, sockets, secrets)", "DIR" },
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &cli->config_file,
      "Config file (default: DATA-DIR/generia-node.conf)", "FILE" },
    { "gateway-port", 'p', 0, G_OPTION_ARG_INT, &cli->gateway_port,
      "HTTP port of the REST gateway (default 8080; 0 picks a free one)", "N" },
    { "database-url", 0, 0, G_OPTION_ARG_STRING, &cli->database_url,
      "PostgreSQL connection string (default: embedded PostgreSQL in DATA-DIR)", "DSN" },
    { "redis-url", 0, 0, G_OPTION_ARG_STRING, &cli->redis_url,
      "Redis URL, unix:/path or redis://host:port (default: embedded Redis in DATA-DIR)", "URL" },
    { "log-level", 0, 0, G_OPTION_ARG_STRING, &cli->log_level, "debug, info, warn or error",
      "LEVEL" },
    { "set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &cli->settings,
      "Set any config key, e.g. --set rpc.workers=16 (repeatable)", "SECTION.KEY=VALUE" },
    { "ephemeral", 0, 0, G_OPTION_ARG_NONE, &cli->ephemeral,
      "Embedded databases without durability (tests and benchmarks only)", NULL },
    { "print-config", 0, 0, G_OPTION_ARG_NONE, &cli->print_config,
      "Print the effective configuration and exit", NULL },
    { NULL },
  };
  g_autofree char *summary = g_strdup_printf (
      "generia-node %s: %s", command,
      strcmp (command, "serve") == 0 ? "run Generia's services" : "apply database migrations");
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_option_context_set_summary (context, summary);
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, argc, argv, error))
    return FALSE;
  if (*argc > 1) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "unexpected argument: %s",
                 (*argv)[1]);
    return FALSE;
  }
  return TRUE;
}

static void
cli_options_clear (cli_options *cli)
{
  g_free (cli->services);
  g_free (cli->data_dir);
  g_free (cli->config_file);
  g_free (cli->database_url);
  g_free (cli->redis_url);
  g_free (cli->log_level);
  g_strfreev (cli->settings);
}

static gn_config *
build_config (const cli_options *cli, GError **error)
{
  gn_config *config = gn_config_new_default ();
  const char *data_dir = cli->data_dir != NULL ? cli->data_dir : g_getenv ("GENERIA_DATA_DIR");
  if (data_dir != NULL) {
    g_autofree char *absolute = g_canonicalize_filename (data_dir, NULL);
    gn_config_set_data_dir (config, absolute);
  }
  if (!gn_config_load (config, cli->config_file, NULL, error))
    goto fail;
  if (cli->services != NULL && !gn_config_set_services (config, cli->services, error))
    goto fail;
  if (cli->gateway_port >= 0) {
    char port[16];
    g_snprintf (port, sizeof port, "%d", cli->gateway_port);
    if (!gn_config_set (config, "gateway.port", port, error))
      goto fail;
  }
  if (cli->database_url != NULL
      && !gn_config_set (config, "database.url", cli->database_url, error))
    goto fail;
  if (cli->redis_url != NULL && !gn_config_set (config, "redis.url", cli->redis_url, error))
    goto fail;
  if (cli->log_level != NULL && !gn_config_set (config, "node.log_level", cli->log_level, error))
    goto fail;
  for (char **setting = cli->settings; setting != NULL && *setting != NULL; setting++) {
    const char *eq = strchr (*setting, '=');
    if (eq == NULL) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--set %s: expected SECTION.KEY=VALUE", *setting);
      goto fail;
    }
    g_autofree char *key = g_strndup (*setting, (gsize)(eq - *setting));
    if (!gn_config_set (config, key, eq + 1, error))
      goto fail;
  }
  for (int id = 0; id < GN_SERVICE_COUNT; id++)
    if (config->run[id] && id != GN_SERVICE_GATEWAY && module_for (id) == NULL) {
      if (cli->services == NULL || strcmp (cli->services, "all") == 0) {
        config->run[id] = false;
        continue;
      }
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "the %s service is not part of generia-node %s yet", gn_service_name (id),
                   PACKAGE_VERSION);
      goto fail;
    }
  return config;

fail:
  gn_config_free (config);
  return NULL;
}

static gboolean
runs_backend (const gn_config *config)
{
  for (int id = 0; id < GN_SERVICE_COUNT; id++)
    if (config->run[id] && id != GN_SERVICE_GATEWAY)
      return TRUE;
  return FALSE;
}

/* Services with migrations own a schema, so they need PostgreSQL; Redis is started alongside
 * it for their caches and counters.  A CDN-only process needs neither. */
static gboolean
runs_database_service (const gn_config *config)
{
  for (int id = 0; id < GN_SERVICE_COUNT; id++) {
    const gn_service_module *module = module_for (id);
    if (config->run[id] && module != NULL && module->migrate != NULL)
      return TRUE;
  }
  return FALSE;
}

/* Creates the folder of every unix: address this process listens on. */
static gboolean
prepare_socket_dirs (const gn_config *config, GError **error)
{
  for (int id = 0; id < GN_SERVICE_COUNT; id++) {
    const char *address = config->service_address[id];
    if (!config->run[id] || address == NULL || !g_str_has_prefix (address, "unix:"))
      continue;
    g_autofree char *dir = g_path_get_dirname (address + 5);
    if (g_mkdir_with_parents (dir, 0700) != 0) {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot create %s: %s",
                   dir, g_strerror (errno));
      return FALSE;
    }
  }
  return TRUE;
}

typedef struct {
  gn_config *config;
  GMutex embedded_lock; /* main thread (start, stop) vs the watchdog (halt) */
  gn_embedded *embedded;
  GMutex stop_lock;
  GCond stop_cond;
  int stop_signal;       /* the first SIGINT/SIGTERM, 0 until then */
  int shutdown_limit_ms; /* after the first signal: the watchdog's bound */
  char *database_url;
  char *redis_url;
  gn_token_key key;
  gn_revocations *revocations;
  gn_token_verifier verifier;
  gn_rpc_service services[GN_SERVICE_COUNT];
  gn_rpc_server *rpc;
  gn_gateway *gateway;
} node;

static gboolean
node_start_storage (node *n, gboolean ephemeral, GError **error)
{
  const gn_config *config = n->config;
  gboolean need_pg = runs_database_service (config)
                     && (config->database_url == NULL || config->database_url[0] == '\0');
  gboolean need_redis = runs_database_service (config)
                        && (config->redis_url == NULL || config->redis_url[0] == '\0');
  if (need_pg || need_redis) {
    gn_embedded_options options = {
      .data_dir = config->data_dir,
      .postgres = need_pg,
      .redis = need_redis,
      .ephemeral = ephemeral,
    };
    gn_info ("starting embedded %s%s%s in %s", need_pg ? "PostgreSQL" : "",
             need_pg && need_redis ? " and " : "", need_redis ? "Redis" : "", config->data_dir);
    gn_embedded *embedded = gn_embedded_start (&options, error);
    if (embedded == NULL)
      return FALSE;
    g_mutex_lock (&n->embedded_lock);
    n->embedded = embedded;
    g_mutex_unlock (&n->embedded_lock);
  }
  n->database_url
      = g_strdup (need_pg ? gn_embedded_database_url (n->embedded) : config->database_url);
  n->redis_url = g_strdup (need_redis ? gn_embedded_redis_url (n->embedded) : config->redis_url);
  return TRUE;
}

static gn_service_env
node_env (node *n)
{
  return (gn_service_env){
    .config = n->config,
    .database_url = n->database_url,
    .redis_url = n->redis_url,
    .token_key = &n->key,
    .revocations = n->revocations,
  };
}

static gboolean
node_migrate (node *n, GError **error)
{
  gn_service_env env = node_env (n);
  for (int id = 0; id < GN_SERVICE_COUNT; id++) {
    const gn_service_module *module = module_for (id);
    if (n->config->run[id] && module != NULL && module->migrate != NULL
        && !module->migrate (&env, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
node_start_services (node *n, GError **error)
{
  const gn_config *config = n->config;
  if (!runs_backend (config))
    return TRUE;
  gn_rpc_server_options options = {
    .cq_threads = config->rpc_cq_threads,
    .workers = config->rpc_workers,
  };
  n->rpc = gn_rpc_server_new (&options);
  gn_rpc_server_set_authenticator (n->rpc, gn_token_verifier_check, &n->verifier);
  gn_rpc_server_set_observer (n->rpc, gn_metrics_observe_rpc, NULL);
  gn_service_env env = node_env (n);
  GHashTable *addresses = g_hash_table_new (g_str_hash, g_str_equal);
  gboolean ok = FALSE;
  for (int id = 0; id < GN_SERVICE_COUNT; id++) {
    const gn_service_module *module = module_for (id);
    if (!config->run[id] || module == NULL)
      continue;
    if (!module->init (&env, &n->services[id], error)
        || !gn_rpc_server_add_service (n->rpc, &n->services[id], error))
      goto done;
    g_hash_table_add (addresses, config->service_address[id]);
  }
  GHashTableIter iter;
  gpointer address;
  g_hash_table_iter_init (&iter, addresses);
  while (g_hash_table_iter_next (&iter, &address, NULL)) {
    if (!gn_rpc_server_listen (n->rpc, address, NULL, error))
      goto done;
    gn_info ("gRPC services listening on %s", (const char *)address);
  }
  ok = gn_rpc_server_start (n->rpc, error);
done:
  g_hash_table_destroy (addresses);
  return ok;
}

/* The HTTP routes of the services running here go on the gateway's port (the CDN's media). */
static void
add_service_routes (void *data, gn_router *router)
{
  node *n = data;
  for (int id = 0; id < GN_SERVICE_COUNT; id++) {
    const gn_service_module *module = module_for (id);
    if (module != NULL && module->add_http_routes != NULL && n->services[id].data != NULL)
      module->add_http_routes (&n->services[id], router);
  }
}

static void
node_stop (node *n)
{
  if (n->gateway != NULL) {
    gn_gateway_stop (n->gateway);
    n->gateway = NULL;
  }
  /* The poller calls the auth service, which may be about to stop in this process. */
  if (n->revocations != NULL)
    gn_revocations_stop_polling (n->revocations);
  if (n->rpc != NULL) {
    gn_rpc_server_shutdown (n->rpc, n->config->shutdown_grace_ms);
    gn_rpc_server_free (n->rpc);
    n->rpc = NULL;
  }
  for (int id = 0; id < GN_SERVICE_COUNT; id++) {
    const gn_service_module *module = module_for (id);
    if (module != NULL && n->services[id].data != NULL)
      module->fini (&n->services[id]);
  }
  gn_revocations_free (n->revocations);
  n->revocations = NULL;
  gn_rpc_clients_shutdown ();
  g_mutex_lock (&n->embedded_lock);
  gn_embedded_stop (n->embedded);
  n->embedded = NULL;
  g_mutex_unlock (&n->embedded_lock);
  g_free (n->database_url);
  g_free (n->redis_url);
}

static const char *
signal_name (int sig)
{
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

/* The signal thread: SIGHUP is logged, the first SIGINT/SIGTERM wakes the main thread, and
 * then this thread bounds the shutdown (see the top of this file).  It is never joined: the
 * process ends while it waits. */
static gpointer
watch_signals (gpointer data)
{
  node *n = data;
  sigset_t signals;
  int sig = 0;

  gn_log_set_service ("node");
  sigemptyset (&signals);
  sigaddset (&signals, SIGINT);
  sigaddset (&signals, SIGTERM);
  sigaddset (&signals, SIGHUP);
  while (sigwait (&signals, &sig) != 0 || sig == SIGHUP)
    if (sig == SIGHUP)
      gn_info ("SIGHUP ignored: restart the node to apply configuration changes");
  gn_info ("%s received, stopping", signal_name (sig));
  g_mutex_lock (&n->stop_lock);
  n->stop_signal = sig;
  g_cond_signal (&n->stop_cond);
  g_mutex_unlock (&n->stop_lock);

  int limit_ms = n->shutdown_limit_ms;
  gint64 deadline = g_get_monotonic_time () + (gint64)limit_ms * 1000;
  for (;;) {
    gint64 left = deadline - g_get_monotonic_time ();
    if (left <= 0) {
      gn_error ("shutdown did not finish within %d ms: stopping the embedded servers and exiting",
                limit_ms);
      break;
    }
    struct timespec timeout
        = { .tv_sec = left / G_USEC_PER_SEC, .tv_nsec = (left % G_USEC_PER_SEC) * 1000 };
    sig = sigtimedwait (&signals, NULL, &timeout);
    if (sig == SIGINT || sig == SIGTERM) {
      gn_warn ("second %s: stopping the embedded servers and exiting now", signal_name (sig));
      break;
    }
  }
  /* If the main thread is stopping them already, this waits until it is done. */
  g_mutex_lock (&n->embedded_lock);
  gn_embedded_halt (n->embedded);
  _exit (1);
}

static int
run (const char *command, int argc, char **argv)
{
  cli_options cli = { 0 };
  /* Static: the signal thread uses it until the process ends. */
  static node n;
  int status = 1;
  g_autoptr (GError) error = NULL;

  if (!parse_cli (&argc, &argv, command, &cli, &error))
    goto out;
  n.config = build_config (&cli, &error);
  if (n.config == NULL)
    goto out;
  if (cli.print_config) {
    g_autofree char *dump = gn_config_dump (n.config);
    fputs (dump, stdout);
    status = 0;
    goto out;
  }
  gn_log_set_level (gn_log_level_parse (n.config->log_level));
  n.shutdown_limit_ms = n.config->shutdown_grace_ms + SHUTDOWN_MARGIN_MS;
  g_thread_unref (g_thread_new ("signals", watch_signals, &n));
  if (g_mkdir_with_parents (n.config->data_dir, 0700) != 0) {
    g_set_error (&error, G_FILE_ERROR, g_file_error_from_errno (errno),
                 "cannot create the data folder %s: %s", n.config->data_dir, g_strerror (errno));
    goto out;
  }
  if (!gn_token_key_load (&n.key, n.config->token_secret_file, &error))
    goto out;
  if (!node_start_storage (&n, cli.ephemeral, &error))
    goto out;
  if (!node_migrate (&n, &error))
    goto out;
  if (strcmp (command, "migrate") == 0) {
    gn_info ("migrations done");
    status = 0;
    goto out;
  }
  /* Created before the services (which get it in their env), fed once they listen, so the
   * first poll can reach an auth service in this very process. */
  n.revocations = gn_revocations_new ();
  n.verifier = (gn_token_verifier){ .key = &n.key, .revocations = n.revocations };
  if (!prepare_socket_dirs (n.config, &error) || !node_start_services (&n, &error))
    goto out;
  gn_revocations_start_polling (n.revocations, n.config->service_address[GN_SERVICE_AUTH],
                                n.config->revocation_poll_ms);
  if (n.config->run[GN_SERVICE_GATEWAY]) {
    n.gateway = gn_gateway_start (n.config, &n.key, n.revocations, add_service_routes, &n, &error);
    if (n.gateway == NULL)
      goto out;
  }
  gn_info ("generia-node %s ready", PACKAGE_VERSION);

  g_mutex_lock (&n.stop_lock);
  while (n.stop_signal == 0)
    g_cond_wait (&n.stop_cond, &n.stop_lock);
  g_mutex_unlock (&n.stop_lock);
  status = 0;

out:
  if (error != NULL) {
    gn_error ("%s", error->message);
    fprintf (stderr, "generia-node: %s\n", error->message);
  }
  if (n.config != NULL) {
    node_stop (&n);
    gn_config_free (n.config);
  }
  cli_options_clear (&cli);
  return status;
}

static void
print_usage (FILE *out)
{
  fputs ("Usage: generia-node COMMAND [OPTIONS]\n"
         "\n"
         "Commands:\n"
         "  serve     run the gateway and services (all of them by default)\n"
         "  migrate   apply pending database migrations and exit\n"
         "\n"
         "  generia-node COMMAND --help   options of a command\n"
         "  generia-node --version\n",
         out);
}

int
main (int argc, char **argv)
{
  /* Before any thread exists, so every thread inherits the mask. */
  sigset_t signals;
  sigemptyset (&signals);
  sigaddset (&signals, SIGINT);
  sigaddset (&signals, SIGTERM);
  sigaddset (&signals, SIGHUP);
  pthread_sigmask (SIG_BLOCK, &signals, NULL);
  signal (SIGPIPE, SIG_IGN);
  gn_log_set_service ("node");

  if (argc < 2) {
    print_usage (stderr);
    return 2;
  }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "-V") == 0) {
    printf ("generia-node %s\n", PACKAGE_VERSION);
    return 0;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0) {
    print_usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "serve") == 0 || strcmp (argv[1], "migrate") == 0) {
    g_autoptr (GError) failpoint_error = NULL;
    if (!gn_failpoints_init (g_getenv ("GENERIA_FAILPOINTS"), &failpoint_error)) {
      fprintf (stderr, "generia-node: GENERIA_FAILPOINTS: %s\n", failpoint_error->message);
      return 2;
    }
    char *command = argv[1];
    argv[1] = argv[0];
    return run (command, argc - 1, argv + 1);
  }
  fprintf (stderr, "generia-node: unknown command '%s'\n\n", argv[1]);
  print_usage (stderr);
  return 2;
}
