/* Prometheus exposition of the observer hooks' data. */
#include <string.h>
#include <glib.h>

#include "metrics.h"

static gboolean
has_line (const char *text, const char *line)
{
  g_autofree char *needle = g_strconcat ("\n", line, "\n", NULL);
  g_autofree char *haystack = g_strconcat ("\n", text, NULL);
  return strstr (haystack, needle) != NULL;
}

static void
test_http_counters_and_histogram (void)
{
  gn_metrics_reset ();
  gn_http_report ok = { .method = "GET", .route = "/api/v1/auth/me", .status = 200, .ms = 0.3 };
  gn_http_report slow = { .method = "GET", .route = "/api/v1/auth/me", .status = 200, .ms = 30 };
  gn_http_report denied = { .method = "GET", .route = "/api/v1/auth/me", .status = 401, .ms = 0.1 };
  gn_metrics_observe_http (NULL, &ok);
  gn_metrics_observe_http (NULL, &slow);
  gn_metrics_observe_http (NULL, &denied);

  g_autofree char *text = gn_metrics_render (NULL);
  g_assert_true (has_line (text, "# TYPE generia_http_requests_total counter"));
  g_assert_true (has_line (
      text,
      "generia_http_requests_total{method=\"GET\",route=\"/api/v1/auth/me\",status=\"200\"} 2"));
  g_assert_true (has_line (
      text,
      "generia_http_requests_total{method=\"GET\",route=\"/api/v1/auth/me\",status=\"401\"} 1"));
  /* Buckets are cumulative: 0.3 ms and 0.1 ms fall in le=0.0005, 30 ms in le=0.05. */
  g_assert_true (has_line (text, "generia_http_request_duration_seconds_bucket{method=\"GET\","
                                 "route=\"/api/v1/auth/me\",le=\"0.0005\"} 2"));
  g_assert_true (has_line (text, "generia_http_request_duration_seconds_bucket{method=\"GET\","
                                 "route=\"/api/v1/auth/me\",le=\"0.025\"} 2"));
  g_assert_true (has_line (text, "generia_http_request_duration_seconds_bucket{method=\"GET\","
                                 "route=\"/api/v1/auth/me\",le=\"0.05\"} 3"));
  g_assert_true (has_line (text, "generia_http_request_duration_seconds_bucket{method=\"GET\","
                                 "route=\"/api/v1/auth/me\",le=\"+Inf\"} 3"));
  g_assert_true (has_line (text, "generia_http_request_duration_seconds_count{method=\"GET\","
                                 "route=\"/api/v1/auth/me\"} 3"));
  g_assert_true (has_line (text, "generia_http_request_duration_seconds_sum{method=\"GET\","
                                 "route=\"/api/v1/auth/me\"} 0.030400"));
}

static void
test_rpc_calls (void)
{
  gn_metrics_reset ();
  gn_rpc_call_report report = { .service = "auth",
                                .method = "Login",
                                .status = GRPC_STATUS_UNAUTHENTICATED,
                                .queue_ms = 0.5,
                                .handler_ms = 1.5 };
  gn_metrics_observe_rpc (NULL, &report);
  g_autofree char *text = gn_metrics_render (NULL);
  g_assert_true (has_line (text, "generia_rpc_server_calls_total{service=\"auth\",method=\"Login\","
                                 "code=\"UNAUTHENTICATED\"} 1"));
  g_assert_true (has_line (text, "generia_rpc_server_handling_seconds_bucket{service=\"auth\","
                                 "method=\"Login\",le=\"0.0025\"} 1"));
  g_assert_true (has_line (text, "generia_rpc_server_handling_seconds_bucket{service=\"auth\","
                                 "method=\"Login\",le=\"0.001\"} 0"));
}

/* A label value with quotes, backslashes or newlines must not break the format. */
static void
test_label_escaping (void)
{
  gn_metrics_reset ();
  gn_http_report odd = { .method = "GET", .route = "a\"b\\c\nd", .status = 404, .ms = 1 };
  gn_metrics_observe_http (NULL, &odd);
  g_autofree char *text = gn_metrics_render (NULL);
  g_assert_true (has_line (
      text,
      "generia_http_requests_total{method=\"GET\",route=\"a\\\"b\\\\c\\nd\",status=\"404\"} 1"));
  /* Every non-comment line is "name{labels} value" or "name value". */
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (char **line = lines; *line != NULL; line++) {
    if ((*line)[0] == '\0' || (*line)[0] == '#')
      continue;
    g_assert_true (g_regex_match_simple ("^[a-z_]+(\\{.*\\})? [0-9.e+-]+$", *line, 0, 0));
  }
  g_assert_true (has_line (text, "# TYPE process_resident_memory_bytes gauge"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/metrics/http", test_http_counters_and_histogram);
  g_test_add_func ("/metrics/rpc", test_rpc_calls);
  g_test_add_func ("/metrics/label-escaping", test_label_escaping);
  return g_test_run ();
}
