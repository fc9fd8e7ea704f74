/* test-storage.c - the storage interface against both backends, for real: the filesystem
 * backend on a temp folder and the S3 backend on s3rver (tests/node/s3-server), a real S3
 * server that checks SigV4 signatures.
 *
 * The same cases run against each backend (the `backends` table); the S3 server is started
 * once for the whole program (each case gets its own key prefix, so cases do not see each
 * other's objects) and stopped at the end.  Run through tests/node/s3-server/run.sh, which
 * installs s3rver first. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>
#include <curl/curl.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "config.h"
#include "storage.h"

#define S3_BUCKET "generia"
#define S3_ACCESS_KEY "S3RVER" /* s3rver's built-in credentials */
#define S3_SECRET_KEY "S3RVER"
#define MIB (1024 * 1024)

/* The S3 server shared by all cases. */
static struct {
  GPid pid;
  int stdin_fd;
  char *dir;
  char *endpoint;
} s3_server = { .stdin_fd = -1 };

static void
remove_tree (const char *path)
{
  struct stat st;
  if (lstat (path, &st) != 0)
    return;
  if (S_ISDIR (st.st_mode)) {
    g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
    const char *name;
    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
  }
  g_assert_cmpint (g_remove (path), ==, 0);
}

static void
s3_server_start (void)
{
  GError *error = NULL;
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "s3-server", "server.mjs", NULL);
  int stdout_fd = -1;

  s3_server.dir = g_dir_make_tmp ("test-storage-s3-XXXXXX", &error);
  g_assert_no_error (error);
  const char *argv[] = { "node", script, s3_server.dir, NULL };
  g_spawn_async_with_pipes (NULL, (char **)argv, NULL,
                            G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                            &s3_server.pid, &s3_server.stdin_fd, &stdout_fd, NULL, &error);
  g_assert_no_error (error);

  /* server.mjs prints "port N" once it accepts connections. */
  char line[64] = "";
  size_t length = 0;
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (strchr (line, '\n') == NULL) {
    struct pollfd pfd = { .fd = stdout_fd, .events = POLLIN };
    int wait_ms = (int)((deadline - g_get_monotonic_time ()) / 1000);
    g_assert_cmpint (wait_ms, >, 0);
    if (poll (&pfd, 1, wait_ms) <= 0)
      continue;
    ssize_t got = read (stdout_fd, line + length, sizeof line - 1 - length);
    g_assert_cmpint (got, >, 0);
    length += (size_t)got;
    line[length] = '\0';
  }
  close (stdout_fd);
  int port = 0;
  g_assert_cmpint (sscanf (line, "port %d", &port), ==, 1);
  s3_server.endpoint = g_strdup_printf ("http://127.0.0.1:%d", port);
}

static void
s3_server_stop (void)
{
  /* Closing its stdin stops server.mjs; SIGTERM in case it is stuck. */
  close (s3_server.stdin_fd);
  kill (s3_server.pid, SIGTERM);
  int status;
  waitpid (s3_server.pid, &status, 0);
  g_spawn_close_pid (s3_server.pid);
  remove_tree (s3_server.dir);
  g_free (s3_server.dir);
  g_free (s3_server.endpoint);
}

static gn_storage *
s3_storage_new (const char *endpoint, const char *bucket, const char *secret_key,
                const char *prefix, GError **error)
{
  gn_s3_options options = {
    .endpoint = endpoint,
    .bucket = bucket,
    .access_key = S3_ACCESS_KEY,
    .secret_key = secret_key,
    .prefix = prefix,
  };
  return gn_storage_s3_new (&options, error);
}

typedef struct {
  char *work; /* temp folder: source and destination files, and the fs root */
  char *root; /* fs: the storage's folder; s3: NULL */
  gn_storage *storage;
} fixture;

typedef struct {
  const char *name;
  void (*open) (fixture *f);
} backend;

static void
open_fs (fixture *f)
{
  GError *error = NULL;
  f->root = g_build_filename (f->work, "root", NULL);
  f->storage = gn_storage_fs_new (f->root, &error);
  g_assert_no_error (error);
  g_assert_true (g_file_test (f->root, G_FILE_TEST_IS_DIR));
}

static void
open_s3 (fixture *f)
{
  static int case_number;
  GError *error = NULL;
  g_autofree char *prefix = g_strdup_printf ("case-%d/", ++case_number);
  f->storage = s3_storage_new (s3_server.endpoint, S3_BUCKET, S3_SECRET_KEY, prefix, &error);
  g_assert_no_error (error);
}

static const backend backends[] = {
  { "fs", open_fs },
  { "s3", open_s3 },
};

static void
fixture_set_up (fixture *f, gconstpointer data)
{
  const backend *b = data;
  GError *error = NULL;
  f->work = g_dir_make_tmp ("test-storage-XXXXXX", &error);
  g_assert_no_error (error);
  if (b != NULL)
    b->open (f);
}

static void
fixture_tear_down (fixture *f, gconstpointer data)
{
  gn_storage_free (f->storage);
  remove_tree (f->work);
  g_free (f->work);
  g_free (f->root);
}

static char *
work_path (fixture *f, const char *name)
{
  return g_build_filename (f->work, name, NULL);
}

/* Writes `size` pseudo-random bytes (all 256 values occur) to `name` in the work folder. */
static GBytes *
write_random_file (fixture *f, const char *name, size_t size, guint32 seed)
{
  GError *error = NULL;
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
  guint8 *data = g_malloc (size);
  for (size_t i = 0; i < size; i++)
    data[i] = (guint8)g_rand_int (rand);
  g_autofree char *path = work_path (f, name);
  g_file_set_contents (path, (const char *)data, (gssize)size, &error);
  g_assert_no_error (error);
  return g_bytes_new_take (data, size);
}

static void
assert_file_content (const char *path, GBytes *expected)
{
  GError *error = NULL;
  g_autofree char *data = NULL;
  gsize length = 0;
  g_file_get_contents (path, &data, &length, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (data, length, g_bytes_get_data (expected, NULL), g_bytes_get_size (expected));
}

static void
put (fixture *f, const char *key, const char *source_name)
{
  GError *error = NULL;
  g_autofree char *source = work_path (f, source_name);
  g_assert_true (gn_storage_put_file (f->storage, key, source, "image/jpeg", &error));
  g_assert_no_error (error);
}

static void
assert_object (fixture *f, const char *key, GBytes *expected)
{
  GError *error = NULL;
  g_autofree char *out = work_path (f, "out");
  gn_storage_stat st = { -1, -1 };
  g_assert_true (gn_storage_get_to_file (f->storage, key, out, &st, &error));
  g_assert_no_error (error);
  assert_file_content (out, expected);
  g_assert_cmpint (st.size, ==, (gint64)g_bytes_get_size (expected));
  g_assert_cmpint (g_remove (out), ==, 0);
}

/* Every file under `folder`, relative to it, sorted. */
static void
collect_files (const char *folder, const char *relative, GPtrArray *into)
{
  g_autoptr (GDir) dir = g_dir_open (folder, 0, NULL);
  const char *name;
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (folder, name, NULL);
    char *child = relative != NULL ? g_build_filename (relative, name, NULL) : g_strdup (name);
    if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
      collect_files (path, child, into);
      g_free (child);
    } else {
      g_ptr_array_add (into, child);
    }
  }
}

static gint
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

/* Asserts that `folder` holds exactly `expected`, a space-separated sorted list of paths. */
static void
assert_files (const char *folder, const char *expected)
{
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  collect_files (folder, NULL, files);
  g_ptr_array_sort (files, compare_paths);
  g_ptr_array_add (files, NULL);
  g_autofree char *found = g_strjoinv (" ", (char **)files->pdata);
  g_assert_cmpstr (found, ==, expected);
}

static void
test_round_trip (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  const char *key = "media/0b8e4a/original-5d41402abc4b2a76.bin";
  g_autoptr (GBytes) content = write_random_file (f, "source", 3 * MIB, 1);
  gint64 before_us = g_get_real_time ();

  put (f, key, "source");
  gn_storage_stat st = { -1, -1 };
  g_assert_true (gn_storage_stat_object (f->storage, key, &st, &error));
  g_assert_no_error (error);
  g_assert_cmpint (st.size, ==, 3 * MIB);
  /* S3's Last-Modified has whole seconds. */
  g_assert_cmpint (st.mtime_us, >=, before_us - 2 * G_USEC_PER_SEC);
  g_assert_cmpint (st.mtime_us, <=, g_get_real_time () + G_USEC_PER_SEC);

  gn_storage_stat got = { -1, -1 };
  g_autofree char *out = work_path (f, "copy");
  g_assert_true (gn_storage_get_to_file (f->storage, key, out, &got, &error));
  g_assert_no_error (error);
  assert_file_content (out, content);
  g_assert_cmpint (got.size, ==, st.size);
  g_assert_cmpint (got.mtime_us, ==, st.mtime_us);
  /* The source is the caller's: still there, unchanged. */
  g_autofree char *source = work_path (f, "source");
  assert_file_content (source, content);

  g_assert_true (gn_storage_remove (f->storage, key, &error));
  g_assert_no_error (error);
  g_assert_false (gn_storage_stat_object (f->storage, key, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
}

static void
test_overwrite (fixture *f, gconstpointer data)
{
  const char *key = "media/1/thumb.jpg";
  g_autoptr (GBytes) first = write_random_file (f, "first", 200 * 1024, 2);
  g_autoptr (GBytes) second = write_random_file (f, "second", 70 * 1024, 3);

  put (f, key, "first");
  assert_object (f, key, first);
  put (f, key, "second");
  assert_object (f, key, second);

  GError *error = NULL;
  gn_storage_stat st;
  g_assert_true (gn_storage_stat_object (f->storage, key, &st, &error));
  g_assert_no_error (error);
  g_assert_cmpint (st.size, ==, 70 * 1024);

  /* An empty object is an object. */
  g_autoptr (GBytes) empty = write_random_file (f, "empty", 0, 4);
  put (f, key, "empty");
  assert_object (f, key, empty);
}

static void
test_missing (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *out = work_path (f, "out");

  g_assert_false (gn_storage_stat_object (f->storage, "media/none/x.jpg", NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_assert_false (gn_storage_get_to_file (f->storage, "media/none/x.jpg", out, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));

  /* A key that names a "folder" of other objects is not an object either. */
  g_autoptr (GBytes) content = write_random_file (f, "source", 10, 5);
  put (f, "media/dir/x.jpg", "source");
  g_assert_false (gn_storage_stat_object (f->storage, "media/dir", NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (gn_storage_get_to_file (f->storage, "media/dir", out, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  assert_files (f->work, f->root ? "root/media/dir/x.jpg source" : "source");
}

static void
test_remove_missing (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_assert_true (gn_storage_remove (f->storage, "media/none/x.jpg", &error));
  g_assert_no_error (error);
  g_assert_true (gn_storage_remove (f->storage, "x", &error));
  g_assert_no_error (error);

  /* Removing twice is fine. */
  g_autoptr (GBytes) content = write_random_file (f, "source", 10, 6);
  put (f, "media/2/a.jpg", "source");
  g_assert_true (gn_storage_remove (f->storage, "media/2/a.jpg", &error));
  g_assert_no_error (error);
  g_assert_true (gn_storage_remove (f->storage, "media/2/a.jpg", &error));
  g_assert_no_error (error);
  g_assert_true (gn_storage_remove (f->storage, "media/2", &error));
  g_assert_no_error (error);
}

static const char *const invalid_keys[] = {
  "",     "../x", "a/../../x", "/abs", "a//b", "a/",   "./a",         "a/./b",
  "a/..", "A B",  "Upper.jpg", "a b",  "a\\b", "a\nb", "caf\xc3\xa9", "%2e%2e/x",
  "a?b",  "a#b",  "a:b",
};

static void
assert_all_refused (gn_storage *storage, const char *key, const char *out)
{
  GError *error = NULL;

  g_assert_false (gn_storage_key_is_valid (key));
  g_assert_false (gn_storage_put_file (storage, key, out, "image/jpeg", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (gn_storage_get_to_file (storage, key, out, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (gn_storage_stat_object (storage, key, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (gn_storage_remove (storage, key, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (gn_storage_local_path (storage, key));
}

static void
test_invalid_keys (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) content = write_random_file (f, "source", 100, 7);
  g_autofree char *source = work_path (f, "source");
  g_autofree char *long_key = g_strnfill (600, 'a');

  /* Put the source to every invalid key, get every invalid key to the source's path: a
   * backend that were asked would write outside its root ("../x") or replace the source. */
  for (size_t i = 0; i < G_N_ELEMENTS (invalid_keys); i++)
    assert_all_refused (f->storage, invalid_keys[i], source);
  assert_all_refused (f->storage, long_key, source);
  assert_file_content (source, content);
  assert_files (f->work, "source");
}

/* The refusal comes before the backend: a storage whose backend would fail (a removed fs
 * root, an S3 server that is not there) still answers INVALID_ARGUMENT at once. */
static void
test_invalid_keys_untouched_backend (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *root = work_path (f, "root");
  g_autofree char *out = work_path (f, "out");

  gn_storage *fs = gn_storage_fs_new (root, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_rmdir (root), ==, 0);
  gn_storage *s3 = s3_storage_new ("http://127.0.0.1:1", S3_BUCKET, S3_SECRET_KEY, NULL, &error);
  g_assert_no_error (error);

  for (size_t i = 0; i < G_N_ELEMENTS (invalid_keys); i++) {
    assert_all_refused (fs, invalid_keys[i], out);
    assert_all_refused (s3, invalid_keys[i], out);
  }
  /* put_file would have recreated the root. */
  g_assert_false (g_file_test (root, G_FILE_TEST_EXISTS));
  assert_files (f->work, "");
  gn_storage_free (fs);
  gn_storage_free (s3);
}

static void
test_keys (void)
{
  const char *valid[] = {
    "a",         "media/0b8e/medium-5d41402abc4b2a76b9719d911017c592.jpg",
    "a.b_c-d/e", "...",
    ".a/b..",    "0/1/2/3/4/5/6/7/8/9",
  };
  for (size_t i = 0; i < G_N_ELEMENTS (valid); i++)
    g_assert_true (gn_storage_key_is_valid (valid[i]));
  for (size_t i = 0; i < G_N_ELEMENTS (invalid_keys); i++)
    g_assert_false (gn_storage_key_is_valid (invalid_keys[i]));
  g_assert_false (gn_storage_key_is_valid (NULL));

  g_autofree char *longest = g_strnfill (512, 'k');
  g_autofree char *too_long = g_strnfill (513, 'k');
  g_assert_true (gn_storage_key_is_valid (longest));
  g_assert_false (gn_storage_key_is_valid (too_long));
}

#define THREADS 8
#define KEYS_PER_THREAD 3

typedef struct {
  fixture *f;
  int index;
  GError *error;
} worker;

static gpointer
put_worker (gpointer data)
{
  worker *w = data;
  g_autofree char *source = g_strdup_printf ("%s/source-%d", w->f->work, w->index);
  for (int k = 0; k < KEYS_PER_THREAD && w->error == NULL; k++) {
    g_autofree char *key = g_strdup_printf ("media/thread-%d/object-%d.bin", w->index, k);
    gn_storage_put_file (w->f->storage, key, source, "application/octet-stream", &w->error);
  }
  if (w->error == NULL)
    gn_storage_put_file (w->f->storage, "media/shared/object.bin", source, NULL, &w->error);
  return NULL;
}

static void
test_concurrent (fixture *f, gconstpointer data)
{
  GBytes *contents[THREADS];
  worker workers[THREADS];
  GThread *threads[THREADS];

  for (int i = 0; i < THREADS; i++) {
    g_autofree char *name = g_strdup_printf ("source-%d", i);
    contents[i] = write_random_file (f, name, 256 * 1024 + (size_t)i * 1000, 100 + (guint32)i);
    workers[i] = (worker){ .f = f, .index = i };
  }
  for (int i = 0; i < THREADS; i++)
    threads[i] = g_thread_new ("put", put_worker, &workers[i]);
  for (int i = 0; i < THREADS; i++) {
    g_thread_join (threads[i]);
    g_assert_no_error (workers[i].error);
  }

  for (int i = 0; i < THREADS; i++) {
    for (int k = 0; k < KEYS_PER_THREAD; k++) {
      g_autofree char *key = g_strdup_printf ("media/thread-%d/object-%d.bin", i, k);
      assert_object (f, key, contents[i]);
    }
  }

  /* All eight wrote the shared key at once: it holds one of them, whole.  Only checked on
   * fs: real S3 makes each PUT visible atomically, but s3rver writes objects in place. */
  if (f->root != NULL) {
    GError *error = NULL;
    g_autofree char *out = work_path (f, "out");
    g_assert_true (
        gn_storage_get_to_file (f->storage, "media/shared/object.bin", out, NULL, &error));
    g_assert_no_error (error);
    g_autoptr (GMappedFile) shared = g_mapped_file_new (out, FALSE, &error);
    g_assert_no_error (error);
    g_autoptr (GBytes) shared_bytes = g_mapped_file_get_bytes (shared);
    int matches = 0;
    for (int i = 0; i < THREADS; i++)
      matches += g_bytes_equal (shared_bytes, contents[i]);
    g_assert_cmpint (matches, ==, 1);

    /* No temp file left behind by the racing renames. */
    g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
    collect_files (f->root, NULL, files);
    g_assert_cmpuint (files->len, ==, THREADS * KEYS_PER_THREAD + 1);
  }
  for (int i = 0; i < THREADS; i++)
    g_bytes_unref (contents[i]);
}

static void
test_no_temp_files (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autoptr (GBytes) content = write_random_file (f, "source", 300 * 1024, 8);
  g_autofree char *missing = work_path (f, "no-such-file");
  g_autofree char *out_dir = work_path (f, "downloads");
  g_autofree char *out = g_build_filename (out_dir, "copy", NULL);
  g_assert_cmpint (g_mkdir (out_dir, 0700), ==, 0);

  put (f, "media/3/a.jpg", "source");
  assert_object (f, "media/3/a.jpg", content);

  /* A put from a source that does not exist, or is a folder, fails and leaves nothing. */
  g_assert_false (gn_storage_put_file (f->storage, "media/3/b.jpg", missing, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "no-such-file"));
  g_clear_error (&error);
  g_assert_false (gn_storage_put_file (f->storage, "media/3/c.jpg", f->work, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_false (gn_storage_stat_object (f->storage, "media/3/b.jpg", NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* A get of a missing object leaves no temp file beside the destination, and a get into a
   * folder that does not exist fails cleanly. */
  g_assert_false (gn_storage_get_to_file (f->storage, "media/3/b.jpg", out, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_autofree char *nowhere = work_path (f, "no-such-folder/copy");
  g_assert_false (gn_storage_get_to_file (f->storage, "media/3/a.jpg", nowhere, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);

  /* A get replaces an existing destination file. */
  g_assert_true (g_file_set_contents (out, "old", 3, NULL));
  g_assert_true (gn_storage_get_to_file (f->storage, "media/3/a.jpg", out, NULL, &error));
  g_assert_no_error (error);
  assert_file_content (out, content);

  assert_files (f->work,
                f->root ? "downloads/copy root/media/3/a.jpg source" : "downloads/copy source");
}

static void
test_local_path (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) content = write_random_file (f, "source", 1000, 9);
  put (f, "media/4/a.jpg", "source");

  g_autofree char *path = gn_storage_local_path (f->storage, "media/4/a.jpg");
  if (f->root == NULL) {
    g_assert_null (path);
    return;
  }
  g_autofree char *expected = g_build_filename (f->root, "media", "4", "a.jpg", NULL);
  g_assert_cmpstr (path, ==, expected);
  assert_file_content (path, content);
  g_assert_null (gn_storage_local_path (f->storage, "media/4/none.jpg"));
  g_assert_null (gn_storage_local_path (f->storage, "media/4"));

  /* Objects and the folders made for them are private to the node. */
  struct stat st;
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_autofree char *folder = g_path_get_dirname (path);
  g_assert_cmpint (g_stat (folder, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
}

static void
test_check (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_assert_true (gn_storage_check (f->storage, &error));
  g_assert_no_error (error);
  if (f->root != NULL)
    assert_files (f->root, "");
}

static void
test_fs_errors (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *root = work_path (f, "root");
  g_autofree char *file = work_path (f, "file");

  /* A root that goes away fails the health check. */
  gn_storage *storage = gn_storage_fs_new (root, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (storage->ops->name, ==, "fs");
  g_assert_cmpint (g_rmdir (root), ==, 0);
  g_assert_false (gn_storage_check (storage, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, root));
  g_clear_error (&error);
  gn_storage_free (storage);

  /* A root that is a file is refused. */
  g_assert_true (g_file_set_contents (file, "x", 1, NULL));
  g_assert_null (gn_storage_fs_new (file, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_null (gn_storage_fs_new ("", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

static void
assert_refused_with (GError **error, const char *words)
{
  g_assert_nonnull (*error);
  g_test_message ("%s", (*error)->message);
  g_assert_error (*error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_nonnull (strstr ((*error)->message, words));
  g_clear_error (error);
}

/* s3rver checks signatures: a storage with the wrong secret is refused, and says why. */
static void
test_s3_wrong_secret (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autoptr (GBytes) content = write_random_file (f, "source", 2 * MIB, 10);
  g_autofree char *source = work_path (f, "source");
  g_autofree char *out = work_path (f, "out");

  gn_storage *good
      = s3_storage_new (s3_server.endpoint, S3_BUCKET, S3_SECRET_KEY, "signed/", &error);
  g_assert_no_error (error);
  gn_storage *bad
      = s3_storage_new (s3_server.endpoint, S3_BUCKET, "not-the-secret", "signed/", &error);
  g_assert_no_error (error);
  g_assert_true (gn_storage_put_file (good, "a.bin", source, NULL, &error));
  g_assert_no_error (error);

  g_assert_false (gn_storage_put_file (bad, "b.bin", source, NULL, &error));
  assert_refused_with (&error, "SignatureDoesNotMatch");
  g_assert_false (gn_storage_get_to_file (bad, "a.bin", out, NULL, &error));
  assert_refused_with (&error, "SignatureDoesNotMatch");
  g_assert_false (gn_storage_remove (bad, "a.bin", &error));
  assert_refused_with (&error, "SignatureDoesNotMatch");
  /* HEAD answers carry no body: the status says it. */
  g_assert_false (gn_storage_stat_object (bad, "a.bin", NULL, &error));
  assert_refused_with (&error, "HTTP 403");
  g_assert_false (gn_storage_check (bad, &error));
  assert_refused_with (&error, "HTTP 403");

  /* Nothing was written or removed by the refused requests. */
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  g_assert_false (gn_storage_stat_object (good, "b.bin", NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  assert_object (&(fixture){ .work = f->work, .storage = good }, "a.bin", content);
  gn_storage_free (bad);

  /* An unknown access key is named too. */
  gn_s3_options options = { .endpoint = s3_server.endpoint,
                            .bucket = S3_BUCKET,
                            .access_key = "NOBODY",
                            .secret_key = S3_SECRET_KEY };
  bad = gn_storage_s3_new (&options, &error);
  g_assert_no_error (error);
  g_assert_false (gn_storage_put_file (bad, "b.bin", source, NULL, &error));
  assert_refused_with (&error, "InvalidAccessKeyId");
  gn_storage_free (bad);

  g_assert_true (gn_storage_remove (good, "a.bin", &error));
  g_assert_no_error (error);
  gn_storage_free (good);
}

static size_t
collect_body (char *data, size_t size, size_t count, void *into)
{
  g_string_append_len (into, data, (gssize)(size * count));
  return size * count;
}

/* PUTs `body` to `key` of the bucket with a raw libcurl request, signed with the right key the
 * way storage-s3.c signs, but claiming `payload_sha256` for the body.  Returns the HTTP status
 * and the answer's body in `answer`. */
static long
raw_put (const char *key, const char *body, const char *payload_sha256, GString *answer)
{
  CURL *curl = curl_easy_init ();
  g_assert_nonnull (curl);
  g_autofree char *url = g_strdup_printf ("%s/%s/%s", s3_server.endpoint, S3_BUCKET, key);
  g_autofree char *sha_header = g_strdup_printf ("x-amz-content-sha256: %s", payload_sha256);
  struct curl_slist *headers = curl_slist_append (NULL, sha_header);
  curl_easy_setopt (curl, CURLOPT_URL, url);
  curl_easy_setopt (curl, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
  curl_easy_setopt (curl, CURLOPT_USERNAME, S3_ACCESS_KEY);
  curl_easy_setopt (curl, CURLOPT_PASSWORD, S3_SECRET_KEY);
  curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, (long)strlen (body));
  curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt (curl, CURLOPT_WRITEDATA, answer);
  g_assert_cmpint (curl_easy_perform (curl), ==, CURLE_OK);
  long status = 0;
  curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all (headers);
  curl_easy_cleanup (curl);
  return status;
}

/* The signature covers x-amz-content-sha256 but not the body: S3 compares the two, and so does
 * the test server.  A PUT whose claimed hash is not its body's is refused and stores nothing;
 * the same request with the right hash is stored, so it is the hash that was refused.  (Every
 * put_file of the other cases passes the same check, so our client's hashes are right.) */
static void
test_s3_payload_hash (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autofree char *body_sha
      = g_compute_checksum_for_string (G_CHECKSUM_SHA256, "the real body", -1);
  g_autofree char *other_sha
      = g_compute_checksum_for_string (G_CHECKSUM_SHA256, "another body", -1);
  g_autoptr (GString) answer = g_string_new (NULL);
  gn_storage *storage = s3_storage_new (s3_server.endpoint, S3_BUCKET, S3_SECRET_KEY, NULL, &error);
  g_assert_no_error (error);

  g_assert_cmpint (raw_put ("payload-hash/wrong", "the real body", other_sha, answer), ==, 400);
  g_assert_nonnull (strstr (answer->str, "<Code>XAmzContentSHA256Mismatch</Code>"));
  g_assert_false (gn_storage_stat_object (storage, "payload-hash/wrong", NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_string_truncate (answer, 0);
  g_assert_cmpint (raw_put ("payload-hash/right", "the real body", body_sha, answer), ==, 200);
  gn_storage_stat st = { -1, -1 };
  g_assert_true (gn_storage_stat_object (storage, "payload-hash/right", &st, &error));
  g_assert_no_error (error);
  g_assert_cmpint (st.size, ==, strlen ("the real body"));
  g_assert_true (gn_storage_remove (storage, "payload-hash/right", &error));
  g_assert_no_error (error);
  gn_storage_free (storage);
}

static void
test_s3_missing_bucket (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autoptr (GBytes) content = write_random_file (f, "source", 1000, 11);
  g_autofree char *source = work_path (f, "source");
  g_autofree char *out = work_path (f, "out");

  gn_storage *storage
      = s3_storage_new (s3_server.endpoint, "no-such-bucket", S3_SECRET_KEY, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (gn_storage_check (storage, &error));
  assert_refused_with (&error, "bucket no-such-bucket does not exist");
  g_assert_false (gn_storage_put_file (storage, "a.jpg", source, NULL, &error));
  assert_refused_with (&error, "NoSuchBucket");
  g_assert_false (gn_storage_get_to_file (storage, "a.jpg", out, NULL, &error));
  assert_refused_with (&error, "NoSuchBucket");
  g_assert_false (gn_storage_remove (storage, "a.jpg", &error));
  assert_refused_with (&error, "NoSuchBucket");
  assert_files (f->work, "source");
  gn_storage_free (storage);
}

static int
closed_port (void)
{
  GError *error = NULL;
  g_autoptr (GSocket) socket
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any = g_inet_socket_address_new (loopback, 0);
  g_assert_true (g_socket_bind (socket, any, FALSE, &error));
  g_assert_no_error (error);
  g_autoptr (GSocketAddress) bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static void
test_s3_server_down (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autoptr (GBytes) content = write_random_file (f, "source", 1000, 12);
  g_autofree char *source = work_path (f, "source");
  g_autofree char *out = work_path (f, "out");
  g_autofree char *endpoint = g_strdup_printf ("http://127.0.0.1:%d", closed_port ());

  gn_storage *storage = s3_storage_new (endpoint, S3_BUCKET, S3_SECRET_KEY, NULL, &error);
  g_assert_no_error (error);
  gint64 start = g_get_monotonic_time ();
  g_assert_false (gn_storage_check (storage, &error));
  assert_refused_with (&error, "connect");
  g_assert_false (gn_storage_put_file (storage, "a.jpg", source, NULL, &error));
  assert_refused_with (&error, endpoint);
  g_assert_false (gn_storage_stat_object (storage, "a.jpg", NULL, &error));
  assert_refused_with (&error, "connect");
  g_assert_false (gn_storage_get_to_file (storage, "a.jpg", out, NULL, &error));
  assert_refused_with (&error, "connect");
  g_assert_false (gn_storage_remove (storage, "a.jpg", &error));
  assert_refused_with (&error, "connect");
  g_assert_cmpint (g_get_monotonic_time () - start, <, 6 * G_USEC_PER_SEC);
  assert_files (f->work, "source");
  gn_storage_free (storage);
}

/* Keys are placed under the prefix, which is URL-encoded as SigV4 expects. */
static void
test_s3_prefix (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  g_autoptr (GBytes) content = write_random_file (f, "source", 5000, 13);
  g_autofree char *source = work_path (f, "source");

  gn_storage *plain = s3_storage_new (s3_server.endpoint, S3_BUCKET, S3_SECRET_KEY, "", &error);
  g_assert_no_error (error);
  gn_storage *tenant
      = s3_storage_new (s3_server.endpoint, S3_BUCKET, S3_SECRET_KEY, "tenant-a/", &error);
  g_assert_no_error (error);
  gn_storage *odd = s3_storage_new (s3_server.endpoint, S3_BUCKET, S3_SECRET_KEY,
                                    "Odd Prefix+=&~(1)/\xc3\xa9t\xc3\xa9/", &error);
  g_assert_no_error (error);

  g_assert_true (gn_storage_put_file (tenant, "media/5/a.jpg", source, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (gn_storage_stat_object (plain, "tenant-a/media/5/a.jpg", NULL, &error));
  g_assert_no_error (error);
  g_assert_false (gn_storage_stat_object (plain, "media/5/a.jpg", NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_assert_true (gn_storage_put_file (odd, "media/5/a.jpg", source, "image/jpeg", &error));
  g_assert_no_error (error);
  assert_object (&(fixture){ .work = f->work, .storage = odd }, "media/5/a.jpg", content);
  g_assert_true (gn_storage_remove (odd, "media/5/a.jpg", &error));
  g_assert_no_error (error);
  g_assert_false (gn_storage_stat_object (odd, "media/5/a.jpg", NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_assert_true (gn_storage_remove (tenant, "media/5/a.jpg", &error));
  g_assert_no_error (error);
  gn_storage_free (plain);
  gn_storage_free (tenant);
  gn_storage_free (odd);
}

static void
test_s3_options (void)
{
  struct {
    gn_s3_options options;
    const char *words;
  } cases[] = {
    { { "ftp://x", "generia", NULL, "a", "s", NULL }, "endpoint" },
    { { "127.0.0.1:9000", "generia", NULL, "a", "s", NULL }, "endpoint" },
    { { "http://x/?a=1", "generia", NULL, "a", "s", NULL }, "endpoint" },
    { { "http://x", "Generia", NULL, "a", "s", NULL }, "bucket" },
    { { "http://x", "a/b", NULL, "a", "s", NULL }, "bucket" },
    { { "http://x", "generia", "", "a", "s", NULL }, "region" },
    { { "http://x", "generia", NULL, "", "s", NULL }, "access key" },
    { { "http://x", "generia", NULL, "a", "", NULL }, "secret key" },
    { { "http://x", "generia", NULL, "a", "s", "/abs/" }, "prefix" },
    { { "http://x", "generia", NULL, "a", "s", "a/../b/" }, "prefix" },
    { { "http://x", "generia", NULL, "a", "s", "a//b/" }, "prefix" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    GError *error = NULL;
    g_assert_null (gn_storage_s3_new (&cases[i].options, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, cases[i].words));
    g_clear_error (&error);
  }
}

static void
set (gn_config *config, const char *key, const char *value)
{
  GError *error = NULL;
  g_assert_true (gn_config_set (config, key, value, &error));
  g_assert_no_error (error);
}

static void
test_from_config (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  gn_config *config = gn_config_new_default ();
  g_autofree char *media = work_path (f, "media");

  /* The default is fs under the data folder; here, a folder of the test's. */
  g_assert_cmpstr (config->storage_backend, ==, "fs");
  set (config, "storage.path", media);
  gn_storage *storage = gn_storage_new_from_config (config, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (storage->ops->name, ==, "fs");
  g_assert_true (g_file_test (media, G_FILE_TEST_IS_DIR));
  gn_storage_free (storage);

  /* s3 names each option it is missing. */
  set (config, "storage.backend", "s3");
  const char *options[][2] = {
    { "storage.s3_endpoint", s3_server.endpoint },
    { "storage.s3_bucket", S3_BUCKET },
    { "storage.s3_access_key", S3_ACCESS_KEY },
    { "storage.s3_secret_key", S3_SECRET_KEY },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (options); i++) {
    g_assert_null (gn_storage_new_from_config (config, &error));
    g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE);
    g_assert_nonnull (strstr (error->message, options[i][0]));
    g_clear_error (&error);
    set (config, options[i][0], options[i][1]);
  }
  set (config, "storage.s3_prefix", "from-config/");
  storage = gn_storage_new_from_config (config, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (storage->ops->name, ==, "s3");
  g_assert_true (gn_storage_check (storage, &error));
  g_assert_no_error (error);
  gn_storage_free (storage);

  /* A bad value is an error, not a storage. */
  set (config, "storage.s3_bucket", "Not A Bucket");
  g_assert_null (gn_storage_new_from_config (config, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  gn_config_free (config);
}

typedef void (*fixture_test) (fixture *f, gconstpointer data);

static void
add_backend_test (const backend *b, const char *name, fixture_test test)
{
  g_autofree char *path = g_strdup_printf ("/storage/%s/%s", b->name, name);
  g_test_add (path, fixture, b, fixture_set_up, test, fixture_tear_down);
}

static void
add_test (const char *path, fixture_test test)
{
  g_test_add (path, fixture, NULL, fixture_set_up, test, fixture_tear_down);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (backends); i++) {
    const backend *b = &backends[i];
    add_backend_test (b, "round-trip", test_round_trip);
    add_backend_test (b, "overwrite", test_overwrite);
    add_backend_test (b, "missing", test_missing);
    add_backend_test (b, "remove-missing", test_remove_missing);
    add_backend_test (b, "invalid-keys", test_invalid_keys);
    add_backend_test (b, "concurrent", test_concurrent);
    add_backend_test (b, "no-temp-files", test_no_temp_files);
    add_backend_test (b, "local-path", test_local_path);
    add_backend_test (b, "check", test_check);
  }
  g_test_add_func ("/storage/keys", test_keys);
  add_test ("/storage/invalid-keys-untouched-backend", test_invalid_keys_untouched_backend);
  add_test ("/storage/fs/errors", test_fs_errors);
  add_test ("/storage/s3/wrong-secret", test_s3_wrong_secret);
  add_test ("/storage/s3/payload-hash", test_s3_payload_hash);
  add_test ("/storage/s3/missing-bucket", test_s3_missing_bucket);
  add_test ("/storage/s3/server-down", test_s3_server_down);
  add_test ("/storage/s3/prefix", test_s3_prefix);
  g_test_add_func ("/storage/s3/options", test_s3_options);
  add_test ("/storage/config", test_from_config);

  s3_server_start ();
  int status = g_test_run ();
  s3_server_stop ();
  return status;
}
