/* test-config.c - config layering (defaults < file < environment < set), validation messages,
 * derived defaults and the masked dump. */
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "config.h"

typedef struct {
  char *dir; /* a temporary folder for config files and data dirs */
} fixture;

static void
fixture_set_up (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  f->dir = g_dir_make_tmp ("test-config-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (fixture *f, gconstpointer data)
{
  g_autoptr (GDir) dir = g_dir_open (f->dir, 0, NULL);
  const char *name;
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (f->dir, name, NULL);
    g_assert_cmpint (g_remove (path), ==, 0);
  }
  g_assert_cmpint (g_rmdir (f->dir), ==, 0);
  g_free (f->dir);
}

static char *
write_file (fixture *f, const char *name, const char *contents)
{
  GError *error = NULL;
  char *path = g_build_filename (f->dir, name, NULL);
  g_file_set_contents (path, contents, -1, &error);
  g_assert_no_error (error);
  return path;
}

static char **
empty_environ (void)
{
  return g_new0 (char *, 1);
}

static void
test_service_names (void)
{
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    g_assert_cmpint (gn_service_from_name (gn_service_name (i)), ==, i);
  g_assert_cmpstr (gn_service_name (GN_SERVICE_INTERACTION), ==, "interaction");
  g_assert_cmpint (gn_service_from_name ("gateway"), ==, GN_SERVICE_GATEWAY);
  g_assert_cmpint (gn_service_from_name ("Auth"), ==, -1);
  g_assert_cmpint (gn_service_from_name ("nope"), ==, -1);
  g_assert_cmpint (gn_service_from_name (NULL), ==, -1);
}

static void
test_defaults (void)
{
  gn_config *config = gn_config_new_default ();
  g_autofree char *expected_dir
      = getuid () == 0 ? g_strdup ("/var/lib/generia-node")
                       : g_build_filename (g_get_user_data_dir (), "generia-node", NULL);
  g_assert_cmpstr (config->data_dir, ==, expected_dir);
  g_assert_null (config->config_file);

  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    g_assert_true (config->run[i]);
  g_assert_cmpstr (config->log_level, ==, "info");
  g_assert_cmpint (config->shutdown_grace_ms, ==, 5000);

  g_autofree char *address = g_strdup_printf ("unix:%s/run/node.sock", expected_dir);
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    if (i == GN_SERVICE_GATEWAY)
      g_assert_null (config->service_address[i]);
    else
      g_assert_cmpstr (config->service_address[i], ==, address);
  g_assert_cmpint (config->rpc_workers, ==, 8);
  g_assert_cmpint (config->rpc_cq_threads, ==, 2);
  g_assert_cmpint (config->rpc_deadline_ms, ==, 5000);

  g_assert_cmpstr (config->gateway_address, ==, "127.0.0.1");
  g_assert_cmpint (config->gateway_port, ==, 8080);
  g_assert_cmpint (config->gateway_threads, ==, 0);
  g_assert_cmpuint (config->max_body_bytes, ==, 1024 * 1024);
  g_assert_cmpstr (config->cors_origins, ==, "*");
  /* Unset: URLs come from each request; no separate CDN listener. */
  g_assert_cmpstr (config->public_url, ==, "");
  g_assert_cmpstr (config->trusted_proxies, ==, "");
  g_assert_cmpint (config->cdn_port, ==, GN_CONFIG_PORT_UNSET);
  g_assert_cmpstr (config->cdn_public_url, ==, "");
  g_assert_cmpint (config->gateway_workers, ==, 0);
  g_assert_cmpint (config->gateway_queue_max, ==, 1024);
  g_assert_cmpint (config->gateway_max_connections, ==, 16384);
  g_assert_cmpint (config->gateway_max_connections_per_ip, ==, 256);
  g_assert_cmpint (config->gateway_idle_timeout_s, ==, 60);
  g_assert_cmpint (config->gateway_header_timeout_s, ==, 30);

  g_assert_cmpstr (config->database_url, ==, "");
  g_assert_cmpstr (config->redis_url, ==, "");

  g_autofree char *secret = g_build_filename (expected_dir, "secrets", "token.key", NULL);
  g_assert_cmpstr (config->token_secret_file, ==, secret);
  g_assert_cmpint (config->access_token_ttl_s, ==, 900);
  g_assert_cmpint (config->refresh_token_ttl_s, ==, 30 * 24 * 3600);
  gn_config_free (config);
}

static void
test_long_data_dir_uses_short_run_dir (void)
{
  g_autofree char *long_dir = g_strdup_printf ("/srv/%s/generia", "a-very-long-folder-name-"
                                                                  "that-goes-on-and-on-and-on-"
                                                                  "until-sockets-do-not-fit");
  gn_config *config = gn_config_new_default ();
  gn_config_set_data_dir (config, long_dir);

  g_autofree char *run_dir = gn_config_run_dir (long_dir);
  g_autofree char *prefix = g_strdup_printf ("/tmp/generia-%u-", (unsigned)getuid ());
  g_assert_true (g_str_has_prefix (run_dir, prefix));
  g_autofree char *again = gn_config_run_dir (long_dir);
  g_assert_cmpstr (run_dir, ==, again);

  const char *address = config->service_address[GN_SERVICE_AUTH];
  g_assert_true (g_str_has_prefix (address, "unix:/tmp/generia-"));
  g_assert_cmpuint (strlen (address) - strlen ("unix:"), <, 108);

  g_autofree char *short_run = gn_config_run_dir ("/var/lib/generia-node");
  g_assert_cmpstr (short_run, ==, "/var/lib/generia-node/run");
  gn_config_free (config);
}

static void
test_file (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *path = write_file (f, "node.conf",
                                      "# a comment\n"
                                      "[node]\n"
                                      "log_level = debug\n"
                                      "services = auth, gateway\n"
                                      "[rpc]\n"
                                      "workers = 3\n"
                                      "auth_address = 127.0.0.1:50051\n"
                                      "[gateway]\n"
                                      "port = 9090\n"
                                      "max_body_bytes = 2048\n"
                                      "cors_origins = https://a.example https://b.example\n"
                                      "[database]\n"
                                      "url = host=/tmp/pg dbname=generia\n"
                                      "[auth]\n"
                                      "access_token_ttl = 60\n");
  gn_config *config = gn_config_new_default ();
  g_auto (GStrv) env = empty_environ ();

  g_assert_true (gn_config_load (config, path, env, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->config_file, ==, path);
  g_assert_cmpstr (config->log_level, ==, "debug");
  g_assert_true (config->run[GN_SERVICE_AUTH]);
  g_assert_true (config->run[GN_SERVICE_GATEWAY]);
  g_assert_false (config->run[GN_SERVICE_POST]);
  g_assert_cmpint (config->rpc_workers, ==, 3);
  g_assert_cmpstr (config->service_address[GN_SERVICE_AUTH], ==, "127.0.0.1:50051");
  g_assert_cmpint (config->gateway_port, ==, 9090);
  g_assert_cmpstr (config->public_url, ==, "");
  g_assert_cmpuint (config->max_body_bytes, ==, 2048);
  g_assert_cmpstr (config->cors_origins, ==, "https://a.example https://b.example");
  g_assert_cmpstr (config->database_url, ==, "host=/tmp/pg dbname=generia");
  g_assert_cmpint (config->access_token_ttl_s, ==, 60);
  gn_config_free (config);
}

static void
test_file_in_data_dir (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *path = write_file (f, "generia-node.conf", "[gateway]\nthreads = 4\n");
  gn_config *config = gn_config_new_default ();
  g_auto (GStrv) env = g_environ_setenv (empty_environ (), "GENERIA_DATA_DIR", f->dir, TRUE);

  g_assert_true (gn_config_load (config, NULL, env, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->data_dir, ==, f->dir);
  g_assert_cmpstr (config->config_file, ==, path);
  g_assert_cmpint (config->gateway_threads, ==, 4);
  gn_config_free (config);

  /* No file in the data folder is fine: defaults. */
  g_assert_cmpint (g_remove (path), ==, 0);
  config = gn_config_new_default ();
  g_assert_true (gn_config_load (config, NULL, env, &error));
  g_assert_no_error (error);
  g_assert_null (config->config_file);
  g_assert_cmpint (config->gateway_threads, ==, 0);
  gn_config_free (config);
}

static void
test_missing_explicit_file (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (f->dir, "absent.conf", NULL);
  gn_config *config = gn_config_new_default ();
  g_auto (GStrv) env = empty_environ ();

  g_assert_false (gn_config_load (config, path, env, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE);
  g_assert_nonnull (strstr (error->message, path));
  gn_config_free (config);
}

static void
test_env_over_file_and_set_over_env (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *path = write_file (f, "node.conf",
                                      "[gateway]\nport = 9090\naddress = 0.0.0.0\n"
                                      "[rpc]\nauth_address = unix:/tmp/from-file.sock\n");
  char **env = empty_environ ();
  env = g_environ_setenv (env, "GENERIA_GATEWAY_PORT", "9191", TRUE);
  env = g_environ_setenv (env, "GENERIA_RPC_AUTH_ADDRESS", "localhost:6000", TRUE);
  env = g_environ_setenv (env, "GENERIA_DATABASE_URL", "postgresql:///generia", TRUE);
  env = g_environ_setenv (env, "GENERIA_SERVER_URL", "http://ignored", TRUE);
  gn_config *config = gn_config_new_default ();

  g_assert_true (gn_config_load (config, path, env, &error));
  g_assert_no_error (error);
  g_assert_cmpint (config->gateway_port, ==, 9191);
  g_assert_cmpstr (config->gateway_address, ==, "0.0.0.0");
  g_assert_cmpstr (config->service_address[GN_SERVICE_AUTH], ==, "localhost:6000");
  g_assert_cmpstr (config->database_url, ==, "postgresql:///generia");

  g_assert_true (gn_config_set (config, "gateway.port", "9292", &error));
  g_assert_no_error (error);
  g_assert_cmpint (config->gateway_port, ==, 9292);
  g_assert_cmpstr (config->public_url, ==, "");

  g_assert_true (gn_config_set (config, "gateway.public_url", "https://photos.example", &error));
  g_assert_true (gn_config_set (config, "gateway.port", "9393", &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->public_url, ==, "https://photos.example");
  /* "" unsets it again. */
  g_assert_true (gn_config_set (config, "gateway.public_url", "", &error));
  g_assert_cmpstr (config->public_url, ==, "");

  /* The CDN's own listener: unset, a port, or 0 for a free one. */
  g_assert_true (gn_config_set (config, "cdn.port", "8090", &error));
  g_assert_cmpint (config->cdn_port, ==, 8090);
  g_assert_true (gn_config_set (config, "cdn.port", "0", &error));
  g_assert_cmpint (config->cdn_port, ==, 0);
  g_assert_true (gn_config_set (config, "cdn.port", "", &error));
  g_assert_cmpint (config->cdn_port, ==, GN_CONFIG_PORT_UNSET);

  g_assert_true (
      gn_config_set (config, "gateway.trusted_proxies", " 127.0.0.1, 10.0.0.0/8,::1 ", &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->trusted_proxies, ==, "127.0.0.1, 10.0.0.0/8,::1");
  gn_config_free (config);
  g_strfreev (env);
}

static void
test_data_dir_flag_beats_environment (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_auto (GStrv) env = g_environ_setenv (empty_environ (), "GENERIA_DATA_DIR", "/srv/env", TRUE);
  gn_config *config = gn_config_new_default ();

  gn_config_set_data_dir (config, f->dir);
  g_assert_true (gn_config_load (config, NULL, env, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->data_dir, ==, f->dir);
  gn_config_free (config);
}

static void
test_derived_paths_follow_data_dir (void)
{
  GError *error = NULL;
  gn_config *config = gn_config_new_default ();

  g_assert_true (gn_config_set (config, "rpc.feed_address", "10.0.0.5:7000", &error));
  g_assert_true (gn_config_set (config, "node.data_dir", "/srv/generia", &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->data_dir, ==, "/srv/generia");
  g_assert_cmpstr (config->service_address[GN_SERVICE_AUTH], ==, "unix:/srv/generia/run/node.sock");
  g_assert_cmpstr (config->service_address[GN_SERVICE_FEED], ==, "10.0.0.5:7000");
  g_assert_cmpstr (config->token_secret_file, ==, "/srv/generia/secrets/token.key");

  g_assert_true (gn_config_set (config, "auth.token_secret_file", "/etc/generia/key", &error));
  gn_config_set_data_dir (config, "/srv/other");
  g_assert_cmpstr (config->token_secret_file, ==, "/etc/generia/key");
  g_assert_cmpstr (config->service_address[GN_SERVICE_CDN], ==, "unix:/srv/other/run/node.sock");
  g_assert_null (config->service_address[GN_SERVICE_GATEWAY]);
  gn_config_free (config);
}

typedef struct {
  const char *key;
  const char *value;
  int code;
} bad_value;

static void
test_bad_values (void)
{
  static const bad_value cases[] = {
    { "gateway.port", "70000", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.port", "-1", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.port", "80x", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.port", "", GN_CONFIG_ERROR_INVALID_VALUE },
    { "rpc.workers", "0", GN_CONFIG_ERROR_INVALID_VALUE },
    { "rpc.deadline_ms", "-5", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.threads", "many", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.max_body_bytes", "0", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.queue_max", "0", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.max_connections_per_ip", "0", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.header_timeout_s", "3601", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.address", "", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.public_url", "localhost:8080", GN_CONFIG_ERROR_INVALID_VALUE },
    { "cdn.public_url", "cdn.example", GN_CONFIG_ERROR_INVALID_VALUE },
    { "cdn.port", "-1", GN_CONFIG_ERROR_INVALID_VALUE },
    { "cdn.port", "70000", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.trusted_proxies", "127.0.0.1, proxy.example", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.trusted_proxies", "10.0.0.0/33", GN_CONFIG_ERROR_INVALID_VALUE },
    { "node.log_level", "loud", GN_CONFIG_ERROR_INVALID_VALUE },
    { "node.services", "auth,blog", GN_CONFIG_ERROR_UNKNOWN_KEY },
    { "node.services", " , ", GN_CONFIG_ERROR_INVALID_VALUE },
    { "node.data_dir", "relative/dir", GN_CONFIG_ERROR_INVALID_VALUE },
    { "rpc.auth_address", "nowhere", GN_CONFIG_ERROR_INVALID_VALUE },
    { "rpc.auth_address", "unix:relative.sock", GN_CONFIG_ERROR_INVALID_VALUE },
    { "rpc.post_address", "host:99999", GN_CONFIG_ERROR_INVALID_VALUE },
    { "redis.url", "http://redis", GN_CONFIG_ERROR_INVALID_VALUE },
    { "auth.refresh_token_ttl", "0", GN_CONFIG_ERROR_INVALID_VALUE },
    { "gateway.colour", "blue", GN_CONFIG_ERROR_UNKNOWN_KEY },
    { "rpc.gateway_address", "localhost:1", GN_CONFIG_ERROR_UNKNOWN_KEY },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    gn_config *config = gn_config_new_default ();
    g_autofree char *before = gn_config_dump (config);

    g_test_message ("%s = \"%s\"", cases[i].key, cases[i].value);
    g_assert_false (gn_config_set (config, cases[i].key, cases[i].value, &error));
    g_assert_error (error, GN_CONFIG_ERROR, cases[i].code);
    g_assert_nonnull (strstr (error->message, cases[i].key));
    if (cases[i].code == GN_CONFIG_ERROR_INVALID_VALUE) {
      g_autofree char *stripped = g_strstrip (g_strdup (cases[i].value));
      g_autofree char *quoted = g_strdup_printf ("\"%s\"", stripped);
      g_assert_nonnull (strstr (error->message, quoted));
    }

    /* A rejected value leaves the configuration as it was. */
    g_autofree char *after = gn_config_dump (config);
    g_assert_cmpstr (before, ==, after);
    gn_config_free (config);
  }
}

static void
test_bad_values_name_their_source (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gn_config *config = gn_config_new_default ();
  char **env = g_environ_setenv (empty_environ (), "GENERIA_RPC_CQ_THREADS", "zero", TRUE);

  g_assert_false (gn_config_load (config, NULL, env, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE);
  g_assert_cmpstr (error->message, ==,
                   "GENERIA_RPC_CQ_THREADS: rpc.cq_threads: \"zero\" is not a whole number");
  g_clear_error (&error);
  g_strfreev (env);
  env = empty_environ ();

  g_autofree char *path = write_file (f, "typo.conf", "[gateway]\nprot = 8081\n");
  g_assert_false (gn_config_load (config, path, env, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_UNKNOWN_KEY);
  g_autofree char *expected = g_strdup_printf ("%s: unknown option \"gateway.prot\"", path);
  g_assert_cmpstr (error->message, ==, expected);
  g_clear_error (&error);

  g_autofree char *range = write_file (f, "range.conf", "[gateway]\nport = 65536\n");
  g_assert_false (gn_config_load (config, range, env, &error));
  g_autofree char *expected_range
      = g_strdup_printf ("%s: gateway.port: \"65536\" is out of range (0-65535)", range);
  g_assert_cmpstr (error->message, ==, expected_range);
  g_clear_error (&error);

  g_autofree char *broken = write_file (f, "broken.conf", "port = 1\n");
  g_assert_false (gn_config_load (config, broken, env, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE);
  g_assert_nonnull (strstr (error->message, broken));
  gn_config_free (config);
  g_strfreev (env);
}

static void
test_services (void)
{
  GError *error = NULL;
  gn_config *config = gn_config_new_default ();

  g_assert_true (gn_config_set_services (config, "auth,gateway", &error));
  g_assert_no_error (error);
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    g_assert_cmpint (config->run[i], ==, i == GN_SERVICE_AUTH || i == GN_SERVICE_GATEWAY);

  g_autofree char *dump = gn_config_dump (config);
  g_assert_nonnull (strstr (dump, "services=auth,gateway\n"));

  g_assert_true (gn_config_set (config, "node.services", "feed", &error));
  g_assert_no_error (error);
  g_assert_true (config->run[GN_SERVICE_FEED]);
  g_assert_false (config->run[GN_SERVICE_AUTH]);

  g_assert_true (gn_config_set_services (config, "all", &error));
  g_assert_no_error (error);
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    g_assert_true (config->run[i]);
  gn_config_free (config);
}

static void
test_dump (void)
{
  GError *error = NULL;
  gn_config *config = gn_config_new_default ();

  g_assert_true (gn_config_set (config, "database.url",
                                "postgresql://generia:s3cret@db.example:5432/generia", &error));
  g_assert_true (
      gn_config_set (config, "redis.url", "redis://:r3dis@cache.example:6379/0", &error));
  g_assert_no_error (error);
  g_autofree char *dump = gn_config_dump (config);
  g_assert_null (strstr (dump, "s3cret"));
  g_assert_null (strstr (dump, "r3dis"));
  g_assert_nonnull (strstr (dump, "url=postgresql://generia:***@db.example:5432/generia\n"));
  g_assert_nonnull (strstr (dump, "url=redis://:***@cache.example:6379/0\n"));
  g_assert_nonnull (strstr (dump, "[gateway]\n"));
  g_assert_nonnull (strstr (dump, "port=8080\n"));
  /* the value itself is untouched */
  g_assert_nonnull (strstr (config->database_url, "s3cret"));

  g_assert_true (gn_config_set (config, "database.url",
                                "host=/run/pg password='s3 cret' dbname=generia", &error));
  g_free (dump);
  dump = gn_config_dump (config);
  g_assert_null (strstr (dump, "s3 cret"));
  g_assert_nonnull (strstr (dump, "url=host=/run/pg password=*** dbname=generia\n"));

  /* The S3 secret key is never printed; an unset one shows as empty. */
  g_assert_nonnull (strstr (dump, "s3_secret_key=\n"));
  g_assert_true (gn_config_set (config, "storage.s3_secret_key", "wJalrXUtnFEMI", &error));
  g_free (dump);
  dump = gn_config_dump (config);
  g_assert_null (strstr (dump, "wJalrXUtnFEMI"));
  g_assert_nonnull (strstr (dump, "s3_secret_key=***\n"));
  g_assert_false (gn_config_set (config, "storage.backend", "ftp", &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE);
  g_clear_error (&error);

  g_assert_true (gn_config_set (config, "database.url", "postgresql://db.example/generia", &error));
  g_free (dump);
  dump = gn_config_dump (config);
  g_assert_nonnull (strstr (dump, "url=postgresql://db.example/generia\n"));

  /* The dump is a valid config file that loads back to the same values. */
  g_autoptr (GKeyFile) file = g_key_file_new ();
  g_assert_true (g_key_file_load_from_data (file, dump, -1, G_KEY_FILE_NONE, &error));
  g_assert_no_error (error);
  g_autofree char *port = g_key_file_get_string (file, "gateway", "port", &error);
  g_assert_cmpstr (port, ==, "8080");
  gn_config_free (config);
}

/* Bounds before parsing: a file over 1 MiB, a device and an overlong value are refused with a
 * message; [ratelimit] reads booleans and numbers. */
static void
test_bounds_and_ratelimit (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gn_config *config = gn_config_new_default ();
  char **env = empty_environ ();

  g_assert_true (config->ratelimit_enabled);
  g_assert_cmpint (config->ratelimit_auth_burst, ==, 10);
  g_assert_cmpint (config->ratelimit_auth_per_minute, ==, 30);
  g_assert_cmpint (config->ratelimit_write_burst, ==, 60);
  g_assert_cmpint (config->ratelimit_write_per_minute, ==, 300);
  g_assert_cmpint (config->max_concurrent_hashes, ==, (int)g_get_num_processors ());

  g_autofree char *ok = write_file (f, "ok.conf",
                                    "[ratelimit]\nenabled = off\nauth_burst = 1000\n"
                                    "[auth]\nmax_concurrent_hashes = 3\n");
  g_assert_true (gn_config_load (config, ok, env, &error));
  g_assert_no_error (error);
  g_assert_false (config->ratelimit_enabled);
  g_assert_cmpint (config->ratelimit_auth_burst, ==, 1000);
  g_assert_cmpint (config->max_concurrent_hashes, ==, 3);
  g_autofree char *dump = gn_config_dump (config);
  g_assert_nonnull (strstr (dump, "[ratelimit]\nenabled=false\n"));
  g_assert_false (gn_config_set (config, "ratelimit.enabled", "maybe", &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE);
  g_clear_error (&error);

  GString *huge = g_string_new ("[gateway]\n");
  while (huge->len <= 1024 * 1024)
    g_string_append (huge, "# padding padding padding padding padding padding padding\n");
  g_autofree char *big = write_file (f, "big.conf", huge->str);
  g_string_free (huge, TRUE);
  g_assert_false (gn_config_load (config, big, env, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE);
  g_assert_nonnull (strstr (error->message, "at most 1048576 bytes"));
  g_clear_error (&error);

  g_assert_false (gn_config_load (config, "/dev/zero", env, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE);
  g_clear_error (&error);

  g_autofree char *long_value = g_strnfill (5000, 'a');
  g_assert_false (gn_config_set (config, "gateway.cors_origins", long_value, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE);
  g_assert_cmpstr (error->message, ==, "gateway.cors_origins: the value is longer than 4096 bytes");
  gn_config_free (config);
  g_strfreev (env);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/config/service-names", test_service_names);
  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/long-data-dir", test_long_data_dir_uses_short_run_dir);
  g_test_add ("/config/file", fixture, NULL, fixture_set_up, test_file, fixture_tear_down);
  g_test_add ("/config/file-in-data-dir", fixture, NULL, fixture_set_up, test_file_in_data_dir,
              fixture_tear_down);
  g_test_add ("/config/missing-explicit-file", fixture, NULL, fixture_set_up,
              test_missing_explicit_file, fixture_tear_down);
  g_test_add ("/config/env-over-file-set-over-env", fixture, NULL, fixture_set_up,
              test_env_over_file_and_set_over_env, fixture_tear_down);
  g_test_add ("/config/data-dir-flag-beats-env", fixture, NULL, fixture_set_up,
              test_data_dir_flag_beats_environment, fixture_tear_down);
  g_test_add_func ("/config/derived-paths", test_derived_paths_follow_data_dir);
  g_test_add_func ("/config/bad-values", test_bad_values);
  g_test_add ("/config/bad-values-name-source", fixture, NULL, fixture_set_up,
              test_bad_values_name_their_source, fixture_tear_down);
  g_test_add_func ("/config/services", test_services);
  g_test_add ("/config/bounds-and-ratelimit", fixture, NULL, fixture_set_up,
              test_bounds_and_ratelimit, fixture_tear_down);
  g_test_add_func ("/config/dump", test_dump);
  return g_test_run ();
}
