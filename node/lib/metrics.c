/* metrics.c - counters and latency histograms in Prometheus text format (see metrics.h).
 *
 * Series live in hash tables keyed by their rendered label set ("route=\"/x\",method=\"GET\"")
 * under one mutex.  An observation is a hash lookup and a few additions, a few hundred
 * nanoseconds, so one lock serves the request rates a node sees; per-thread shards would be
 * the next step if it ever showed in a profile.  Histogram buckets are fixed and span 0.5 ms to
 * 10 s, the range between an in-process call and a timed-out one. */
#include "metrics.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

static const double buckets[]
    = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define N_BUCKETS G_N_ELEMENTS (buckets)

typedef struct {
  guint64 counts[N_BUCKETS]; /* per bucket, not cumulative; summed when rendered */
  guint64 count;
  double sum;
} histogram;

static GMutex lock;
static GHashTable *http_requests;  /* labels -> guint64 * */
static GHashTable *http_durations; /* labels -> histogram * */
static GHashTable *rpc_calls;
static GHashTable *rpc_durations;
static gint64 start_time_us;

static void
ensure_tables (void)
{
  if (http_requests != NULL)
    return;
  http_requests = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  http_durations = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  rpc_calls = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  rpc_durations = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  start_time_us = g_get_real_time ();
}

/* Appends name="value" with the escapes the exposition format requires. */
static void
append_label (GString *out, const char *name, const char *value)
{
  if (out->len > 0)
    g_string_append_c (out, ',');
  g_string_append_printf (out, "%s=\"", name);
  for (const char *p = value != NULL ? value : ""; *p != '\0'; p++) {
    if (*p == '\\' || *p == '"')
      g_string_append_c (out, '\\');
    if (*p == '\n')
      g_string_append (out, "\\n");
    else
      g_string_append_c (out, *p);
  }
  g_string_append_c (out, '"');
}

static void
count (GHashTable *table, char *labels)
{
  guint64 *value = g_hash_table_lookup (table, labels);
  if (value == NULL) {
    value = g_new0 (guint64, 1);
    g_hash_table_insert (table, g_strdup (labels), value);
  }
  (*value)++;
}

static void
observe (GHashTable *table, char *labels, double seconds)
{
  histogram *h = g_hash_table_lookup (table, labels);
  if (h == NULL) {
    h = g_new0 (histogram, 1);
    g_hash_table_insert (table, g_strdup (labels), h);
  }
  size_t i = 0;
  while (i < N_BUCKETS && seconds > buckets[i])
    i++;
  if (i < N_BUCKETS)
    h->counts[i]++;
  h->count++;
  h->sum += seconds;
}

void
gn_metrics_observe_http (void *data, const gn_http_report *report)
{
  g_autoptr (GString) counter_labels = g_string_new (NULL);
  g_autoptr (GString) histogram_labels = g_string_new (NULL);
  char status[8];
  g_snprintf (status, sizeof status, "%d", report->status);
  append_label (counter_labels, "method", report->method);
  append_label (counter_labels, "route", report->route);
  append_label (counter_labels, "status", status);
  append_label (histogram_labels, "method", report->method);
  append_label (histogram_labels, "route", report->route);

  g_mutex_lock (&lock);
  ensure_tables ();
  count (http_requests, counter_labels->str);
  observe (http_durations, histogram_labels->str, report->ms / 1000.0);
  g_mutex_unlock (&lock);
}

void
gn_metrics_observe_rpc (void *data, const gn_rpc_call_report *report)
{
  g_autoptr (GString) counter_labels = g_string_new (NULL);
  g_autoptr (GString) histogram_labels = g_string_new (NULL);
  append_label (counter_labels, "service", report->service);
  append_label (counter_labels, "method", report->method);
  append_label (counter_labels, "code", gn_rpc_status_name (report->status));
  append_label (histogram_labels, "service", report->service);
  append_label (histogram_labels, "method", report->method);

  g_mutex_lock (&lock);
  ensure_tables ();
  count (rpc_calls, counter_labels->str);
  observe (rpc_durations, histogram_labels->str, (report->queue_ms + report->handler_ms) / 1000.0);
  g_mutex_unlock (&lock);
}

static gint
compare_keys (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

/* Keys sorted, so the output is stable between scrapes. */
static GPtrArray *
sorted_keys (GHashTable *table)
{
  GPtrArray *keys = g_ptr_array_sized_new (g_hash_table_size (table));
  GHashTableIter iter;
  gpointer key;
  g_hash_table_iter_init (&iter, table);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (keys, key);
  g_ptr_array_sort (keys, compare_keys);
  return keys;
}

static void
render_counter (GString *out, const char *name, const char *help, GHashTable *table)
{
  g_string_append_printf (out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
  g_autoptr (GPtrArray) keys = sorted_keys (table);
  for (guint i = 0; i < keys->len; i++) {
    const guint64 *value = g_hash_table_lookup (table, keys->pdata[i]);
    g_string_append_printf (out, "%s{%s} %" G_GUINT64_FORMAT "\n", name,
                            (const char *)keys->pdata[i], *value);
  }
}

static void
render_histogram (GString *out, const char *name, const char *help, GHashTable *table)
{
  g_string_append_printf (out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  g_autoptr (GPtrArray) keys = sorted_keys (table);
  for (guint i = 0; i < keys->len; i++) {
    const char *labels = keys->pdata[i];
    const histogram *h = g_hash_table_lookup (table, labels);
    guint64 cumulative = 0;
    for (size_t b = 0; b < N_BUCKETS; b++) {
      cumulative += h->counts[b];
      g_string_append_printf (out, "%s_bucket{%s,le=\"%g\"} %" G_GUINT64_FORMAT "\n", name, labels,
                              buckets[b], cumulative);
    }
    g_string_append_printf (out, "%s_bucket{%s,le=\"+Inf\"} %" G_GUINT64_FORMAT "\n", name, labels,
                            h->count);
    g_string_append_printf (out, "%s_sum{%s} %.6f\n", name, labels, h->sum);
    g_string_append_printf (out, "%s_count{%s} %" G_GUINT64_FORMAT "\n", name, labels, h->count);
  }
}

static long
resident_bytes (void)
{
  long pages = 0;
  FILE *statm = fopen ("/proc/self/statm", "r");
  if (statm == NULL)
    return 0;
  if (fscanf (statm, "%*s %ld", &pages) != 1)
    pages = 0;
  fclose (statm);
  return pages * sysconf (_SC_PAGESIZE);
}

char *
gn_metrics_render (size_t *len)
{
  GString *out = g_string_sized_new (4096);
  g_string_append_printf (out,
                          "# HELP generia_build_info Version of this generia-node.\n"
                          "# TYPE generia_build_info gauge\n"
                          "generia_build_info{version=\"%s\"} 1\n",
                          PACKAGE_VERSION);
  g_mutex_lock (&lock);
  ensure_tables ();
  render_counter (out, "generia_http_requests_total", "HTTP requests answered, by route.",
                  http_requests);
  render_histogram (out, "generia_http_request_duration_seconds",
                    "Time from request to answer, by route.", http_durations);
  render_counter (out, "generia_rpc_server_calls_total", "gRPC calls finished, by method.",
                  rpc_calls);
  render_histogram (out, "generia_rpc_server_handling_seconds",
                    "Time a gRPC call waited for a worker plus ran its handler.", rpc_durations);
  double started = start_time_us / (double)G_USEC_PER_SEC;
  g_mutex_unlock (&lock);
  g_string_append_printf (out,
                          "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                          "# TYPE process_resident_memory_bytes gauge\n"
                          "process_resident_memory_bytes %ld\n"
                          "# HELP process_start_time_seconds Start time since the Unix epoch.\n"
                          "# TYPE process_start_time_seconds gauge\n"
                          "process_start_time_seconds %.3f\n",
                          resident_bytes (), started);
  if (len != NULL)
    *len = out->len;
  return g_string_free (out, FALSE);
}

void
gn_metrics_reset (void)
{
  g_mutex_lock (&lock);
  if (http_requests != NULL) {
    g_hash_table_remove_all (http_requests);
    g_hash_table_remove_all (http_durations);
    g_hash_table_remove_all (rpc_calls);
    g_hash_table_remove_all (rpc_durations);
  }
  g_mutex_unlock (&lock);
}
