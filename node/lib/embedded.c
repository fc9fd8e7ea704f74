/* embedded.c - a private PostgreSQL cluster and Redis inside the node's data folder.
 *
 * A node with no database or Redis URL configured runs its own servers, so that one command
 * gives a working node on a laptop and tests get throwaway servers:
 *
 *   <data-dir>/postgres/      the cluster: initdb on first start, in "postgres.init" renamed
 *                             when complete, so a crash during initdb never leaves half a
 *                             cluster behind
 *   <data-dir>/postgres.log   PostgreSQL's log (its stderr)
 *   <data-dir>/redis/         redis.conf (rewritten at every start), pid file, AOF
 *   <data-dir>/redis.log      Redis's log
 *   <data-dir>/embedded.lock  flock()ed while a node runs these servers
 *   <run>/                    unix sockets: <data-dir>/run, or a short folder under /tmp when
 *                             the data folder's path is too long (gn_config_run_dir)
 *
 * Neither server listens on TCP: PostgreSQL gets `listen_addresses=''` and Redis `port 0`, and
 * the run folder is 0700, so only the node's user reaches them (the cluster trusts local
 * connections; host connections are rejected even if someone enables TCP).  The port number
 * 5432 only names PostgreSQL's socket file; private folders never conflict.
 *
 * As root, PostgreSQL runs as the "postgres" system user (initdb and postgres refuse root): the
 * cluster, its log and the run folder are chowned to it, the data folder gets the o+x bit
 * (enter, not list) and every folder above it must let that user pass, which is checked first
 * for a clear message.  Redis runs as the node's user.
 *
 * Children, not daemons.  `postgres` and `redis-server` (with `daemonize no`) run as direct
 * children of the node, so it can watch them and they can never outlive it.  Each child is
 * forked by the supervisor thread and, before exec: gets every signal disposition reset and an
 * empty signal mask (the node blocks SIGINT/SIGTERM in all threads and ignores SIGPIPE, and
 * both would survive exec: a Redis that inherited them ignored SIGTERM), its own session (a
 * Ctrl-C in the node's terminal reaches only the node, which stops them in order), its output
 * on its log file, the postgres user's credentials when root, and then a parent-death signal
 * (PR_SET_PDEATHSIG: SIGINT, PostgreSQL's fast shutdown; SIGTERM for Redis).  That signal is set
 * after the credential change, which would clear it, and followed by a getppid() check, which
 * closes the race with a node that died during the fork.  It fires when the forking *thread*
 * ends, so only the supervisor thread forks servers, and it ends only after its servers did.
 * So whatever ends the node, SIGKILL included, its servers shut down cleanly by themselves.
 * Every other descriptor is closed in the child, so no server holds the node's sockets or the
 * data folder lock.
 *
 * Leftovers.  A node that died leaves its servers shutting down, and an older node may have
 * left daemonised ones.  Before starting, the pid file of each server (postmaster.pid,
 * redis.pid) is read; if it names a live process whose working folder is that server's folder
 * (both servers chdir there), the start waits up to 3 s for it to end by itself, then sends it
 * its stop signal (up to 20 s), then its hard one (SIGQUIT: PostgreSQL's immediate shutdown,
 * recovered from the WAL at the next start; SIGKILL for Redis), then SIGKILL.  Every wait uses
 * a pidfd, so a reused pid is never signalled.  A pid file naming an unrelated live process
 * (pids are reused after a reboot, and in a container the next run gets the same small pids)
 * is removed when no process at all runs in the cluster's folder, since PostgreSQL would
 * otherwise refuse to start.  Two nodes never run servers on one data folder: the lock file.
 *
 * Supervision.  The supervisor thread polls the pidfds of its children and a wake-up pipe.
 * While the node starts, a server that exits fails the start with the end of its log.  Once
 * started, a server that dies is logged and restarted after a back-off: 100 ms, doubling up to
 * 5 s, back to 100 ms once a run lasted 10 s.  (After a kill -9 of the postmaster, its old
 * backends hold the shared memory for a moment and the new postmaster refuses to start: the
 * back-off retries until they are gone.)  The services notice nothing but failed statements,
 * answered as UNAVAILABLE (503) at once, and their per-thread connections reconnect (pg.c,
 * redis.c).
 *
 * Starting: the cluster is created if needed, leftovers cleared, the supervisor started (it
 * forks both servers), PostgreSQL polled with PQping for up to 60 s, the database "generia"
 * created if missing, Redis polled with PING for up to 10 s.  Stopping (gn_embedded_halt, also
 * from a shutdown watchdog): no more restarts, each server gets its stop signal (PostgreSQL
 * SIGINT, Redis SIGTERM, which saves) and the same escalation as for leftovers.
 *
 * Ephemeral mode (tests) trades durability for speed: fsync, synchronous_commit and
 * full_page_writes off, initdb --no-sync, Redis without AOF or snapshots. */
#define _GNU_SOURCE
#include "embedded.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "config.h"
#include "log.h"

#define PG_PORT "5432"
#define PG_SUPERUSER "generia"
#define PG_DATABASE "generia"
#define PG_SYSTEM_USER "postgres"
#define PG_START_TIMEOUT_US (60 * G_USEC_PER_SEC)
#define REDIS_START_TIMEOUT_US (10 * G_USEC_PER_SEC)
#define LEFTOVER_GRACE_US (3 * G_USEC_PER_SEC)
#define STOP_TIMEOUT_US (20 * G_USEC_PER_SEC)
#define ESCALATE_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define BACKOFF_MIN_US (100 * 1000)
#define BACKOFF_MAX_US (5 * G_USEC_PER_SEC)
#define STABLE_RUN_US (10 * G_USEC_PER_SEC)
#define POLL_INTERVAL_US (20 * 1000)
#define LOG_TAIL_LINES 15

/* One supervised server.  pid, pidfd, started_at, restart_at, backoff_us, last_status and
 * spawn_error change under gn_embedded.lock; the rest is set before the supervisor starts. */
typedef struct {
  const char *name; /* "PostgreSQL", "Redis" */
  bool enabled;
  bool as_pg_user;
  int stop_signal; /* clean shutdown, and the parent-death signal */
  int hard_signal; /* when the clean shutdown takes too long */
  char **argv;
  char **envp;
  char *log_path;
  char *home;    /* its working folder: how its processes are recognised */
  char *pidfile; /* the server's own pid file */

  pid_t pid; /* 0 when not running */
  int pidfd; /* -1 when not running */
  gint64 started_at;
  gint64 restart_at; /* 0 unless a restart is due */
  gint64 backoff_us;
  int last_status; /* waitpid status of its last exit */
  char *spawn_error;
} server;

struct gn_embedded {
  char *data_dir;
  char *run_dir;
  bool ephemeral;
  int lock_fd;

  /* root: PostgreSQL runs as the postgres system user */
  bool as_system_user;
  uid_t pg_uid;
  gid_t pg_gid;
  gid_t *pg_groups;
  int n_pg_groups;

  char *pg_bindir;
  char *pg_data;
  char *database_url;

  char *redis_dir;
  char *redis_socket;
  char *redis_url;

  server pg;
  server redis;

  GMutex lock;
  GCond changed; /* a server started or exited, or the supervisor spawned its first ones */
  GThread *supervisor;
  int wake[2];      /* pipe: wakes the supervisor's poll() */
  bool spawned;     /* the supervisor has made its first attempt at every server */
  bool supervising; /* start-up is over: restart what dies */
  bool stopping;    /* no more restarts; the supervisor ends when no server runs */
  bool given_up;    /* a server survived SIGKILL: the supervisor ends anyway */
};

/* ---- helpers ---- */

static char *
log_tail (const char *path)
{
  g_autofree char *contents = NULL;
  if (!g_file_get_contents (path, &contents, NULL, NULL) || *contents == '\0')
    return g_strdup_printf ("(%s is empty)", path);

  g_strchomp (contents);
  const char *start = contents + strlen (contents);
  for (int lines = 0; start > contents && lines < LOG_TAIL_LINES; lines++) {
    start--;
    while (start > contents && start[-1] != '\n')
      start--;
  }
  return g_strdup_printf ("last lines of %s:\n%s", path, start);
}

/* Adds the end of a server's log to an error about that server. */
static void
append_log_tail (GError **error, const char *log_path)
{
  if (error == NULL || *error == NULL)
    return;
  g_autofree char *tail = log_tail (log_path);
  char *message = g_strdup_printf ("%s\n%s", (*error)->message, tail);
  g_free ((*error)->message);
  (*error)->message = message;
}

/* English messages in a locale that always exists, for logs and errors alike. */
static char **
server_environment (void)
{
  return g_environ_setenv (g_get_environ (), "LC_ALL", "C.UTF-8", TRUE);
}

/* A tool gets its own session and none of the node's blocked signals. */
static void
child_setup_tool (gpointer data)
{
  sigset_t none;
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  setsid ();
}

/* Runs a tool (initdb) to completion, as the postgres user when `as_pg_user` and the node is
 * root.  Returns the exit code (or -1 if it could not run) and its output. */
static int
run_tool (gn_embedded *e, const char *const *argv, bool as_pg_user, char **output, GError **error)
{
  g_autoptr (GPtrArray) args = g_ptr_array_new ();
  g_autofree char *runuser = NULL;

  if (as_pg_user && e->as_system_user) {
    runuser = g_find_program_in_path ("runuser");
    g_ptr_array_add (args, runuser ? runuser : (char *)"/usr/sbin/runuser");
    g_ptr_array_add (args, (char *)"-u");
    g_ptr_array_add (args, (char *)PG_SYSTEM_USER);
    g_ptr_array_add (args, (char *)"--");
  }
  for (const char *const *arg = argv; *arg != NULL; arg++)
    g_ptr_array_add (args, (char *)*arg);
  g_ptr_array_add (args, NULL);

  g_auto (GStrv) env = server_environment ();
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int wait_status;

  if (!g_spawn_sync ("/", (char **)args->pdata, env, G_SPAWN_STDIN_FROM_DEV_NULL, child_setup_tool,
                     NULL, &out, &err, &wait_status, error))
    return -1;

  if (output != NULL)
    *output = g_strstrip (g_strconcat (out, err, NULL));
  if (WIFEXITED (wait_status))
    return WEXITSTATUS (wait_status);
  return 128 + (WIFSIGNALED (wait_status) ? WTERMSIG (wait_status) : 0);
}

static gboolean
run_tool_checked (gn_embedded *e, const char *const *argv, bool as_pg_user, GError **error)
{
  g_autofree char *output = NULL;
  int status = run_tool (e, argv, as_pg_user, &output, error);

  if (status == 0)
    return TRUE;
  if (status > 0) {
    g_autofree char *name = g_path_get_basename (argv[0]);
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED, "%s exited with status %d: %s", name,
                 status, output);
  }
  return FALSE;
}

static gboolean
chown_to_pg_user (gn_embedded *e, const char *path, GError **error)
{
  if (!e->as_system_user || lchown (path, e->pg_uid, e->pg_gid) == 0)
    return TRUE;
  int saved_errno = errno;
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
               "cannot give %s to user " PG_SYSTEM_USER ": %s", path, g_strerror (saved_errno));
  return FALSE;
}

static gboolean
make_dir (const char *path, int mode, GError **error)
{
  if (g_mkdir_with_parents (path, mode) == 0)
    return TRUE;
  int saved_errno = errno;
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "cannot create %s: %s",
               path, g_strerror (saved_errno));
  return FALSE;
}

/* Removes a folder left by an interrupted initdb; symbolic links are removed, not followed. */
static gboolean
remove_tree (const char *path, GError **error)
{
  struct stat st;
  if (lstat (path, &st) != 0)
    return TRUE;

  if (S_ISDIR (st.st_mode)) {
    g_autoptr (GDir) dir = g_dir_open (path, 0, error);
    const char *name;
    if (dir == NULL)
      return FALSE;
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (!remove_tree (child, error))
        return FALSE;
    }
  }
  if (g_remove (path) == 0)
    return TRUE;
  int saved_errno = errno;
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "cannot remove %s: %s",
               path, g_strerror (saved_errno));
  return FALSE;
}

/* As root: can the postgres user pass through `path` and every folder above it? */
static gboolean
check_pg_user_can_enter (gn_embedded *e, const char *path, GError **error)
{
  g_autofree char *dir = g_strdup (path);

  for (;;) {
    struct stat st;
    if (stat (dir, &st) == 0) {
      mode_t needed = st.st_uid == e->pg_uid ? S_IXUSR : st.st_gid == e->pg_gid ? S_IXGRP : S_IXOTH;
      if ((st.st_mode & needed) == 0) {
        g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_ACCES,
                     "PostgreSQL runs as user " PG_SYSTEM_USER " and cannot enter %s: "
                     "choose a data dir under /var/lib or /tmp",
                     dir);
        return FALSE;
      }
    }
    if (strcmp (dir, "/") == 0)
      return TRUE;
    char *parent = g_path_get_dirname (dir);
    g_free (dir);
    dir = parent;
  }
}

/* The run folder holds the sockets, so it must be ours (it may be a shared /tmp path). */
static gboolean
prepare_run_dir (gn_embedded *e, GError **error)
{
  if (!make_dir (e->run_dir, 0700, error))
    return FALSE;

  struct stat st;
  if (lstat (e->run_dir, &st) != 0 || !S_ISDIR (st.st_mode)
      || (st.st_uid != getuid () && !(e->as_system_user && st.st_uid == e->pg_uid))
      || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                 "%s is not a private folder of this user: remove it or choose another data "
                 "dir",
                 e->run_dir);
    return FALSE;
  }
  return chown_to_pg_user (e, e->run_dir, error);
}

/* ---- processes ---- */

static char *
describe_exit (int status)
{
  if (WIFEXITED (status))
    return g_strdup_printf ("exited with status %d", WEXITSTATUS (status));
  if (WIFSIGNALED (status))
    return g_strdup_printf ("was killed by signal %d (%s)", WTERMSIG (status),
                            g_strsignal (WTERMSIG (status)));
  return g_strdup ("ended");
}

/* Writes "generia-node: cannot start NAME: STEP failed (errno N)" with async-signal-safe calls
 * only, for the log of a child that failed before exec. */
static void
write_child_failure (const char *name, const char *step, int saved_errno)
{
  char digits[16];
  int n = sizeof digits;
  unsigned value = (unsigned)saved_errno;
  do {
    digits[--n] = (char)('0' + value % 10);
    value /= 10;
  } while (value > 0 && n > 0);

  const char *parts[] = { "generia-node: cannot start ", name, ": ", step, " failed (errno " };
  for (size_t i = 0; i < G_N_ELEMENTS (parts); i++)
    if (write (STDERR_FILENO, parts[i], strlen (parts[i])) < 0)
      return;
  if (write (STDERR_FILENO, digits + n, sizeof digits - (size_t)n) < 0
      || write (STDERR_FILENO, ")\n", 2) < 0)
    return;
}

/* The child between fork and exec: async-signal-safe calls only. */
static void G_GNUC_NORETURN
exec_server (const gn_embedded *e, const server *s, int null_fd, int log_fd, pid_t node_pid)
{
  struct sigaction default_action = { .sa_handler = SIG_DFL };
  sigset_t none;
  const char *step = "redirecting output";

  if (dup2 (log_fd, STDOUT_FILENO) < 0 || dup2 (log_fd, STDERR_FILENO) < 0
      || dup2 (null_fd, STDIN_FILENO) < 0)
    goto fail;
  /* sigaction() refuses SIGKILL, SIGSTOP and glibc's internal signals, which is fine. */
  for (int sig = 1; sig < NSIG; sig++)
    sigaction (sig, &default_action, NULL);
  sigemptyset (&none);
  step = "resetting the signal mask";
  if (sigprocmask (SIG_SETMASK, &none, NULL) != 0)
    goto fail;
  step = "setsid";
  if (setsid () < 0)
    goto fail;
  step = "becoming user " PG_SYSTEM_USER;
  if (s->as_pg_user
      && (setgroups ((size_t)e->n_pg_groups, e->pg_groups) != 0 || setgid (e->pg_gid) != 0
          || setuid (e->pg_uid) != 0))
    goto fail;
  step = "PR_SET_PDEATHSIG";
  if (prctl (PR_SET_PDEATHSIG, s->stop_signal) != 0)
    goto fail;
  if (getppid () != node_pid)
    _exit (1); /* the node died before the death signal was armed */
  step = "closing the node's descriptors";
  if (close_range (3, ~0U, 0) != 0)
    goto fail;
  execve (s->argv[0], s->argv, s->envp);
  step = "exec";
fail:
  write_child_failure (s->name, step, errno);
  _exit (127);
}

/* Forks and execs a server; called by the supervisor thread, with the lock held. */
static bool
spawn_server (gn_embedded *e, server *s)
{
  int null_fd = open ("/dev/null", O_RDWR | O_CLOEXEC);
  int log_fd = open (s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  pid_t node_pid = getpid ();
  pid_t pid = -1;

  g_clear_pointer (&s->spawn_error, g_free);
  if (null_fd < 0 || log_fd < 0) {
    s->spawn_error = g_strdup_printf ("cannot open %s: %s", null_fd < 0 ? "/dev/null" : s->log_path,
                                      g_strerror (errno));
    goto done;
  }
  pid = fork ();
  if (pid == 0)
    exec_server (e, s, null_fd, log_fd, node_pid);
  if (pid < 0) {
    s->spawn_error = g_strdup_printf ("fork: %s", g_strerror (errno));
    goto done;
  }
  s->pidfd = pidfd_open (pid, 0);
  if (s->pidfd < 0) {
    s->spawn_error = g_strdup_printf ("pidfd_open: %s", g_strerror (errno));
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    pid = -1;
    goto done;
  }
  s->pid = pid;
  s->started_at = g_get_monotonic_time ();

done:
  if (null_fd >= 0)
    close (null_fd);
  if (log_fd >= 0)
    close (log_fd);
  return pid > 0;
}

static void
schedule_restart (server *s, gint64 now)
{
  bool was_stable = s->started_at != 0 && now - s->started_at >= STABLE_RUN_US;
  s->backoff_us
      = s->backoff_us == 0 || was_stable ? BACKOFF_MIN_US : MIN (s->backoff_us * 2, BACKOFF_MAX_US);
  s->restart_at = now + s->backoff_us;
}

/* The server's pidfd is readable: reaps it and decides what comes next. */
static void
server_exited (gn_embedded *e, server *s)
{
  int status = 0;
  pid_t pid = s->pid;
  if (waitpid (pid, &status, WNOHANG) == 0)
    return;
  close (s->pidfd);
  s->pidfd = -1;
  s->pid = 0;
  s->last_status = status;

  g_autofree char *how = describe_exit (status);
  if (e->stopping)
    gn_info ("embedded %s (pid %d) %s", s->name, pid, how);
  else if (e->supervising) {
    schedule_restart (s, g_get_monotonic_time ());
    gn_error ("embedded %s (pid %d) %s: restarting it in %lld ms (log: %s)", s->name, pid, how,
              (long long)s->backoff_us / 1000, s->log_path);
  }
  g_cond_broadcast (&e->changed);
}

static void
restart_due (gn_embedded *e, server *s, gint64 now)
{
  if (s->restart_at == 0 || s->restart_at > now || e->stopping)
    return;
  s->restart_at = 0;
  if (spawn_server (e, s)) {
    gn_info ("embedded %s restarted (pid %d)", s->name, s->pid);
    g_cond_broadcast (&e->changed);
    return;
  }
  schedule_restart (s, now);
  gn_error ("embedded %s could not be restarted (%s): trying again in %lld ms", s->name,
            s->spawn_error, (long long)s->backoff_us / 1000);
}

static gpointer
supervise (gpointer data)
{
  gn_embedded *e = data;
  server *servers[] = { &e->redis, &e->pg };

  gn_log_set_service ("node");
  g_mutex_lock (&e->lock);
  for (size_t i = 0; i < G_N_ELEMENTS (servers); i++)
    if (servers[i]->enabled)
      spawn_server (e, servers[i]);
  e->spawned = true;
  g_cond_broadcast (&e->changed);

  for (;;) {
    struct pollfd fds[1 + G_N_ELEMENTS (servers)] = { { .fd = e->wake[0], .events = POLLIN } };
    server *watched[G_N_ELEMENTS (servers)];
    nfds_t n = 1;
    gint64 now = g_get_monotonic_time ();
    gint64 next = G_MAXINT64;

    for (size_t i = 0; i < G_N_ELEMENTS (servers); i++) {
      server *s = servers[i];
      if (s->pid > 0) {
        watched[n - 1] = s;
        fds[n++] = (struct pollfd){ .fd = s->pidfd, .events = POLLIN };
      } else if (s->restart_at != 0 && !e->stopping)
        next = MIN (next, s->restart_at);
    }
    if (e->given_up || (e->stopping && n == 1))
      break;
    int timeout_ms = next == G_MAXINT64 ? -1 : (int)MAX (0, (next - now + 999) / 1000);

    g_mutex_unlock (&e->lock);
    int ready = poll (fds, n, timeout_ms);
    g_mutex_lock (&e->lock);

    if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
      char drain[64];
      while (read (e->wake[0], drain, sizeof drain) > 0)
        ;
    }
    for (nfds_t i = 1; ready > 0 && i < n; i++)
      if (fds[i].revents != 0)
        server_exited (e, watched[i - 1]);
    now = g_get_monotonic_time ();
    for (size_t i = 0; i < G_N_ELEMENTS (servers); i++)
      restart_due (e, servers[i], now);
  }
  g_mutex_unlock (&e->lock);
  return NULL;
}

static void
wake_supervisor (gn_embedded *e)
{
  if (e->wake[1] >= 0 && write (e->wake[1], "", 1) < 0 && errno != EAGAIN)
    gn_warn ("cannot wake the embedded servers' supervisor: %s", g_strerror (errno));
}

static bool
any_running (gn_embedded *e)
{
  return e->pg.pid > 0 || e->redis.pid > 0;
}

/* Stops both servers: the stop signal, then the hard one, then SIGKILL, each with its wait. */
static void
stop_servers (gn_embedded *e)
{
  server *servers[] = { &e->redis, &e->pg };
  static const gint64 waits[] = { STOP_TIMEOUT_US, ESCALATE_TIMEOUT_US, ESCALATE_TIMEOUT_US };

  g_mutex_lock (&e->lock);
  e->stopping = true;
  for (size_t i = 0; i < G_N_ELEMENTS (servers); i++)
    servers[i]->restart_at = 0;
  wake_supervisor (e);
  for (size_t phase = 0; phase < G_N_ELEMENTS (waits) && any_running (e); phase++) {
    for (size_t i = 0; i < G_N_ELEMENTS (servers); i++) {
      server *s = servers[i];
      int sig = phase == 0 ? s->stop_signal : phase == 1 ? s->hard_signal : SIGKILL;
      if (s->pid <= 0)
        continue;
      if (phase > 0)
        gn_warn ("embedded %s (pid %d) is still running: sending SIG%s", s->name, s->pid,
                 sigabbrev_np (sig));
      if (pidfd_send_signal (s->pidfd, sig, NULL, 0) != 0 && errno != ESRCH)
        gn_error ("cannot signal embedded %s (pid %d): %s", s->name, s->pid, g_strerror (errno));
    }
    gint64 deadline = g_get_monotonic_time () + waits[phase];
    while (any_running (e) && g_cond_wait_until (&e->changed, &e->lock, deadline))
      ;
  }
  for (size_t i = 0; i < G_N_ELEMENTS (servers); i++)
    if (servers[i]->pid > 0) {
      gn_error ("embedded %s (pid %d) survived SIGKILL: leaving it", servers[i]->name,
                servers[i]->pid);
      e->given_up = true;
      wake_supervisor (e);
    }
  g_mutex_unlock (&e->lock);
}

/* Waits until the server answers, failing as soon as its process has ended. */
static gboolean
wait_until_ready (gn_embedded *e, server *s, bool (*answers) (gn_embedded *e), gint64 timeout_us,
                  GError **error)
{
  gint64 deadline = g_get_monotonic_time () + timeout_us;

  for (;;) {
    g_mutex_lock (&e->lock);
    bool running = s->pid > 0;
    g_autofree char *why = !running && s->spawn_error != NULL ? g_strdup (s->spawn_error)
                           : !running                         ? describe_exit (s->last_status)
                                                              : NULL;
    g_mutex_unlock (&e->lock);

    if (!running) {
      g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED, "%s did not start: it %s", s->name,
                   why);
      append_log_tail (error, s->log_path);
      return FALSE;
    }
    if (answers (e))
      return TRUE;
    if (g_get_monotonic_time () > deadline) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "%s did not answer within %d s",
                   s->name, (int)(timeout_us / G_USEC_PER_SEC));
      append_log_tail (error, s->log_path);
      return FALSE;
    }
    g_usleep (POLL_INTERVAL_US);
  }
}

/* ---- leftovers of an earlier run ---- */

/* Is `pid`'s working folder `real_dir`?  1 yes, 0 no (or no such process), -1 unknown: a
 * process of another user, which cannot be one of ours either. */
static int
process_runs_in (pid_t pid, const char *real_dir)
{
  g_autofree char *link = g_strdup_printf ("/proc/%d/cwd", (int)pid);
  g_autoptr (GError) error = NULL;
  g_autofree char *cwd = g_file_read_link (link, &error);
  if (cwd == NULL)
    return g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? 0 : -1;
  return strcmp (cwd, real_dir) == 0;
}

static bool
any_process_runs_in (const char *real_dir)
{
  g_autoptr (GDir) proc = g_dir_open ("/proc", 0, NULL);
  const char *name;
  gint64 pid;

  while (proc != NULL && (name = g_dir_read_name (proc)) != NULL)
    if (g_ascii_string_to_signed (name, 10, 1, INT_MAX, &pid, NULL)
        && process_runs_in ((pid_t)pid, real_dir) == 1)
      return true;
  return false;
}

static bool
wait_pidfd (int pidfd, gint64 timeout_us)
{
  gint64 deadline = g_get_monotonic_time () + timeout_us;
  for (;;) {
    gint64 left = deadline - g_get_monotonic_time ();
    struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
    int ready = poll (&pfd, 1, (int)MAX (0, (left + 999) / 1000));
    if (ready > 0)
      return true;
    if (left <= 0 || (ready < 0 && errno != EINTR))
      return false;
  }
}

/* Makes way for a new server: a process of an earlier run named by the server's pid file and
 * still running in its folder is given time to finish, then stopped. */
static gboolean
clear_leftover (server *s, GError **error)
{
  g_autofree char *contents = NULL;
  g_autofree char *real_home = realpath (s->home, NULL);
  gint64 pid;

  if (real_home == NULL || !g_file_get_contents (s->pidfile, &contents, NULL, NULL))
    return TRUE;
  g_strdelimit (contents, "\n", '\0');
  if (!g_ascii_string_to_signed (g_strstrip (contents), 10, 2, INT_MAX, &pid, NULL))
    return TRUE;
  int pidfd = pidfd_open ((pid_t)pid, 0);
  if (pidfd < 0)
    return TRUE; /* nothing runs under that number: the server replaces its stale file */

  int ours = process_runs_in ((pid_t)pid, real_home);
  if (ours != 1) {
    close (pidfd);
    if (ours == 0 && !any_process_runs_in (real_home)) {
      gn_warn ("%s names pid %d, an unrelated process: removing the stale file", s->pidfile,
               (int)pid);
      g_unlink (s->pidfile);
    }
    return TRUE;
  }

  static const gint64 waits[] = { STOP_TIMEOUT_US, ESCALATE_TIMEOUT_US, ESCALATE_TIMEOUT_US };
  gn_warn ("embedded %s (pid %d) of an earlier run still runs in %s: waiting for it to end",
           s->name, (int)pid, s->home);
  bool gone = wait_pidfd (pidfd, LEFTOVER_GRACE_US);
  for (size_t phase = 0; !gone && phase < G_N_ELEMENTS (waits); phase++) {
    int sig = phase == 0 ? s->stop_signal : phase == 1 ? s->hard_signal : SIGKILL;
    gn_warn ("sending SIG%s to the earlier embedded %s (pid %d)", sigabbrev_np (sig), s->name,
             (int)pid);
    if (pidfd_send_signal (pidfd, sig, NULL, 0) != 0 && errno != ESRCH)
      break;
    gone = wait_pidfd (pidfd, waits[phase]);
  }
  close (pidfd);
  if (!gone)
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                 "the %s of an earlier run (pid %d, in %s) does not stop: stop it by hand", s->name,
                 (int)pid, s->home);
  return gone;
}

/* Two nodes on one data folder would fight over its servers. */
static gboolean
lock_data_dir (gn_embedded *e, GError **error)
{
  g_autofree char *path = g_build_filename (e->data_dir, "embedded.lock", NULL);
  e->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (e->lock_fd >= 0 && flock (e->lock_fd, LOCK_EX | LOCK_NB) == 0)
    return TRUE;
  int saved_errno = errno;
  if (saved_errno == EWOULDBLOCK)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                 "another generia-node runs the embedded servers of %s (%s is locked)", e->data_dir,
                 path);
  else
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "cannot lock %s: %s",
                 path, g_strerror (saved_errno));
  return FALSE;
}

static void
server_init (server *s, const char *name, int stop_signal, int hard_signal)
{
  s->name = name;
  s->stop_signal = stop_signal;
  s->hard_signal = hard_signal;
  s->pidfd = -1;
}

static void
server_clear (server *s)
{
  g_strfreev (s->argv);
  g_strfreev (s->envp);
  g_free (s->log_path);
  g_free (s->home);
  g_free (s->pidfile);
  g_free (s->spawn_error);
}

/* ---- PostgreSQL ---- */

/* The server programs: those of the cluster's own major version if it exists already (a newer
 * PostgreSQL installed later cannot open it), else the newest of /usr/lib/postgresql/N/bin,
 * else the folder of `postgres` on PATH. */
static char *
find_pg_bindir (const char *pg_data)
{
  g_autofree char *version_file = g_build_filename (pg_data, "PG_VERSION", NULL);
  g_autofree char *cluster_version = NULL;
  if (g_file_get_contents (version_file, &cluster_version, NULL, NULL)) {
    g_strstrip (cluster_version);
    g_autofree char *postgres_bin
        = g_build_filename ("/usr/lib/postgresql", cluster_version, "bin", "postgres", NULL);
    if (g_file_test (postgres_bin, G_FILE_TEST_IS_EXECUTABLE))
      return g_path_get_dirname (postgres_bin);
  }

  g_autoptr (GDir) versions = g_dir_open ("/usr/lib/postgresql", 0, NULL);
  g_autofree char *best = NULL;
  gint64 best_version = -1;
  const char *name;

  while (versions != NULL && (name = g_dir_read_name (versions)) != NULL) {
    gint64 version;
    g_autofree char *postgres_bin
        = g_build_filename ("/usr/lib/postgresql", name, "bin", "postgres", NULL);
    if (g_ascii_string_to_signed (name, 10, 0, G_MAXINT, &version, NULL) && version > best_version
        && g_file_test (postgres_bin, G_FILE_TEST_IS_EXECUTABLE)) {
      best_version = version;
      g_free (best);
      best = g_path_get_dirname (postgres_bin);
    }
  }
  if (best != NULL)
    return g_steal_pointer (&best);

  g_autofree char *on_path = g_find_program_in_path ("postgres");
  return on_path ? g_path_get_dirname (on_path) : NULL;
}

static char *
pg_tool (gn_embedded *e, const char *name)
{
  return g_build_filename (e->pg_bindir, name, NULL);
}

/* libpq quoting for one keyword value. */
static char *
pq_quote (const char *value)
{
  if (*value != '\0' && strpbrk (value, " \t\n'\\") == NULL)
    return g_strdup (value);

  GString *quoted = g_string_new ("'");
  for (const char *c = value; *c != '\0'; c++) {
    if (*c == '\'' || *c == '\\')
      g_string_append_c (quoted, '\\');
    g_string_append_c (quoted, *c);
  }
  g_string_append_c (quoted, '\'');
  return g_string_free (quoted, FALSE);
}

static gboolean
pg_init_cluster (gn_embedded *e, GError **error)
{
  g_autofree char *version_file = g_build_filename (e->pg_data, "PG_VERSION", NULL);
  if (g_file_test (version_file, G_FILE_TEST_EXISTS))
    return TRUE;

  if (g_file_test (e->pg_data, G_FILE_TEST_EXISTS) && g_rmdir (e->pg_data) != 0) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                 "%s exists but is not a PostgreSQL cluster: move it away", e->pg_data);
    return FALSE;
  }

  g_autofree char *init_dir = g_strconcat (e->pg_data, ".init", NULL);
  if (!remove_tree (init_dir, error) || !make_dir (init_dir, 0700, error)
      || !chown_to_pg_user (e, init_dir, error))
    return FALSE;

  gn_info ("creating the PostgreSQL cluster in %s (first start)", e->pg_data);
  g_autofree char *initdb = pg_tool (e, "initdb");
  const char *argv[] = {
    initdb,
    "-D",
    init_dir,
    "-U",
    PG_SUPERUSER,
    "--auth-local=trust",
    "--auth-host=reject",
    "-E",
    "UTF8",
    "--locale=C.UTF-8",
    e->ephemeral ? "--no-sync" : NULL,
    NULL,
  };
  if (!run_tool_checked (e, argv, true, error)) {
    g_prefix_error (error, "initdb %s: ", init_dir);
    return FALSE;
  }

  if (g_rename (init_dir, e->pg_data) != 0) {
    int saved_errno = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                 "cannot rename %s to %s: %s", init_dir, e->pg_data, g_strerror (saved_errno));
    return FALSE;
  }
  return TRUE;
}

static gboolean
pg_create_database (gn_embedded *e, GError **error)
{
  const char *keys[] = { "host", "port", "dbname", "user", "connect_timeout", NULL };
  const char *values[] = { e->run_dir, PG_PORT, "postgres", PG_SUPERUSER, "10", NULL };
  PGconn *conn = PQconnectdbParams (keys, values, 0);
  PGresult *result = NULL;
  const char *params[] = { PG_DATABASE };
  gboolean ok = FALSE;

  if (PQstatus (conn) != CONNECTION_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED,
                 "cannot connect to the embedded PostgreSQL: %s", PQerrorMessage (conn));
    goto fail;
  }

  result = PQexecParams (conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params,
                         NULL, NULL, 0);
  if (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 0) {
    PQclear (result);
    result = PQexec (conn, "CREATE DATABASE " PG_DATABASE);
    if (PQresultStatus (result) == PGRES_COMMAND_OK)
      gn_info ("created database " PG_DATABASE);
  }
  if (PQresultStatus (result) != PGRES_TUPLES_OK && PQresultStatus (result) != PGRES_COMMAND_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "creating database " PG_DATABASE ": %s",
                 PQerrorMessage (conn));
    goto fail;
  }
  ok = TRUE;

fail:
  PQclear (result);
  PQfinish (conn);
  return ok;
}

static bool
pg_answers (gn_embedded *e)
{
  const char *keys[] = { "host", "port", "dbname", "user", "connect_timeout", NULL };
  const char *values[] = { e->run_dir, PG_PORT, "postgres", PG_SUPERUSER, "5", NULL };
  return PQpingParams (keys, values, 0) == PQPING_OK;
}

static gboolean
pg_prepare (gn_embedded *e, GError **error)
{
  e->pg_bindir = find_pg_bindir (e->pg_data);
  if (e->pg_bindir == NULL) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "PostgreSQL's server programs (initdb, postgres) were not found in "
                 "/usr/lib/postgresql/*/bin or on PATH: install the package postgresql");
    return FALSE;
  }
  if (!pg_init_cluster (e, error))
    return FALSE;

  server *s = &e->pg;
  s->enabled = true;
  s->as_pg_user = e->as_system_user;
  s->log_path = g_build_filename (e->data_dir, "postgres.log", NULL);
  s->home = g_strdup (e->pg_data);
  s->pidfile = g_build_filename (e->pg_data, "postmaster.pid", NULL);
  s->envp = server_environment ();

  GPtrArray *argv = g_ptr_array_new ();
  const char *const common[]
      = { "-D", e->pg_data, "-k", e->run_dir, "-p", PG_PORT, "-c", "listen_addresses=" };
  const char *const ephemeral[]
      = { "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off" };
  g_ptr_array_add (argv, pg_tool (e, "postgres"));
  for (size_t i = 0; i < G_N_ELEMENTS (common); i++)
    g_ptr_array_add (argv, g_strdup (common[i]));
  for (size_t i = 0; e->ephemeral && i < G_N_ELEMENTS (ephemeral); i++)
    g_ptr_array_add (argv, g_strdup (ephemeral[i]));
  g_ptr_array_add (argv, NULL);
  s->argv = (char **)g_ptr_array_free (argv, FALSE);

  return clear_leftover (s, error);
}

/* ---- Redis ---- */

static bool
redis_answers (gn_embedded *e)
{
  struct timeval timeout = { .tv_sec = 1 };
  redisContext *ctx = redisConnectUnixWithTimeout (e->redis_socket, timeout);
  bool pong = false;

  if (ctx != NULL && ctx->err == 0) {
    redisReply *reply = redisCommand (ctx, "PING");
    pong = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp (reply->str, "PONG") == 0;
    if (reply != NULL)
      freeReplyObject (reply);
  }
  if (ctx != NULL)
    redisFree (ctx);
  return pong;
}

/* A value in redis.conf: double-quoted, so paths may hold spaces. */
static char *
redis_quote (const char *value)
{
  GString *quoted = g_string_new ("\"");
  for (const char *c = value; *c != '\0'; c++) {
    if (*c == '"' || *c == '\\')
      g_string_append_c (quoted, '\\');
    g_string_append_c (quoted, *c);
  }
  g_string_append_c (quoted, '"');
  return g_string_free (quoted, FALSE);
}

static gboolean
redis_write_conf (gn_embedded *e, const char *conf_path, GError **error)
{
  g_autofree char *socket_path = redis_quote (e->redis_socket);
  g_autofree char *pidfile = redis_quote (e->redis.pidfile);
  g_autofree char *dir = redis_quote (e->redis_dir);
  g_autofree char *logfile = redis_quote (e->redis.log_path);
  g_autofree char *conf = g_strdup_printf (
      "# Written by generia-node at every start: changes here are overwritten.\n"
      "port 0\n"
      "unixsocket %s\n"
      "unixsocketperm 700\n"
      "daemonize no\n"
      "pidfile %s\n"
      "dir %s\n"
      "logfile %s\n"
      "%s",
      socket_path, pidfile, dir, logfile,
      e->ephemeral ? "save \"\"\nappendonly no\n" : "appendonly yes\nappendfsync everysec\n");

  return g_file_set_contents_full (conf_path, conf, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                   error);
}

static gboolean
redis_prepare (gn_embedded *e, GError **error)
{
  g_autofree char *program = g_find_program_in_path ("redis-server");
  if (program == NULL) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "redis-server was not found on PATH: install the package redis-server");
    return FALSE;
  }

  server *s = &e->redis;
  s->enabled = true;
  s->log_path = g_build_filename (e->data_dir, "redis.log", NULL);
  s->home = g_strdup (e->redis_dir);
  s->pidfile = g_build_filename (e->redis_dir, "redis.pid", NULL);
  s->envp = server_environment ();
  g_autofree char *conf_path = g_build_filename (e->redis_dir, "redis.conf", NULL);
  if (!make_dir (e->redis_dir, 0700, error) || !redis_write_conf (e, conf_path, error))
    return FALSE;
  const char *argv[] = { program, conf_path, NULL };
  s->argv = g_strdupv ((char **)argv);

  return clear_leftover (s, error);
}

/* ---- start and stop ---- */

static gboolean
prepare (gn_embedded *e, const gn_embedded_options *options, GError **error)
{
  e->as_system_user = getuid () == 0;
  if (e->as_system_user && options->postgres) {
    struct passwd *pw = getpwnam (PG_SYSTEM_USER);
    if (pw == NULL) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                   "as root, PostgreSQL runs as the system user " PG_SYSTEM_USER
                   ", which does not exist: install the package postgresql");
      return FALSE;
    }
    e->pg_uid = pw->pw_uid;
    e->pg_gid = pw->pw_gid;
    /* The child cannot call initgroups() (not async-signal-safe): the list is made here. */
    int n_groups = 0;
    getgrouplist (PG_SYSTEM_USER, e->pg_gid, NULL, &n_groups);
    e->pg_groups = g_new0 (gid_t, MAX (n_groups, 1));
    e->n_pg_groups = MAX (n_groups, 1);
    e->pg_groups[0] = e->pg_gid;
    if (getgrouplist (PG_SYSTEM_USER, e->pg_gid, e->pg_groups, &e->n_pg_groups) < 0)
      e->n_pg_groups = 1;
  }

  if (!make_dir (e->data_dir, 0700, error) || !prepare_run_dir (e, error))
    return FALSE;
  if (e->as_system_user && options->postgres) {
    /* Root's own data folder lets the postgres user pass (not list); the folders above it
     * are someone else's business and are only checked. */
    struct stat st;
    if (stat (e->data_dir, &st) == 0 && st.st_uid == 0 && (st.st_mode & S_IXOTH) == 0
        && chmod (e->data_dir, (st.st_mode & 07777) | S_IXOTH) != 0) {
      int saved_errno = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                   "cannot open %s to user " PG_SYSTEM_USER ": %s", e->data_dir,
                   g_strerror (saved_errno));
      return FALSE;
    }
    if (!check_pg_user_can_enter (e, e->data_dir, error)
        || !check_pg_user_can_enter (e, e->run_dir, error))
      return FALSE;
  }
  return TRUE;
}

gn_embedded *
gn_embedded_start (const gn_embedded_options *options, GError **error)
{
  g_return_val_if_fail (options != NULL && options->data_dir != NULL, NULL);
  g_return_val_if_fail (g_path_is_absolute (options->data_dir), NULL);

  gn_embedded *e = g_new0 (gn_embedded, 1);
  e->data_dir = g_strdup (options->data_dir);
  e->run_dir = gn_config_run_dir (options->data_dir);
  e->ephemeral = options->ephemeral;
  e->lock_fd = -1;
  e->wake[0] = e->wake[1] = -1;
  e->pg_data = g_build_filename (e->data_dir, "postgres", NULL);
  e->redis_dir = g_build_filename (e->data_dir, "redis", NULL);
  e->redis_socket = g_build_filename (e->run_dir, "redis.sock", NULL);
  g_mutex_init (&e->lock);
  g_cond_init (&e->changed);
  server_init (&e->pg, "PostgreSQL", SIGINT, SIGQUIT);
  server_init (&e->redis, "Redis", SIGTERM, SIGKILL);

  if (!prepare (e, options, error) || !lock_data_dir (e, error))
    goto fail;
  if (options->redis && !redis_prepare (e, error))
    goto fail;
  if (options->postgres && !pg_prepare (e, error))
    goto fail;
  if (pipe2 (e->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "pipe: %s", g_strerror (errno));
    goto fail;
  }

  e->supervisor = g_thread_new ("embedded", supervise, e);
  g_mutex_lock (&e->lock);
  while (!e->spawned)
    g_cond_wait (&e->changed, &e->lock);
  g_mutex_unlock (&e->lock);

  if (options->postgres) {
    if (!wait_until_ready (e, &e->pg, pg_answers, PG_START_TIMEOUT_US, error)
        || !pg_create_database (e, error))
      goto fail;
    g_autofree char *host = pq_quote (e->run_dir);
    e->database_url = g_strdup_printf (
        "host=%s port=" PG_PORT " dbname=" PG_DATABASE " user=" PG_SUPERUSER, host);
  }
  if (options->redis) {
    if (!wait_until_ready (e, &e->redis, redis_answers, REDIS_START_TIMEOUT_US, error))
      goto fail;
    e->redis_url = g_strconcat ("unix:", e->redis_socket, NULL);
  }

  /* From here on a server that dies is restarted, including one that died a moment ago. */
  g_mutex_lock (&e->lock);
  e->supervising = true;
  gint64 now = g_get_monotonic_time ();
  if (e->pg.enabled && e->pg.pid == 0)
    schedule_restart (&e->pg, now);
  if (e->redis.enabled && e->redis.pid == 0)
    schedule_restart (&e->redis, now);
  wake_supervisor (e);
  g_mutex_unlock (&e->lock);
  return e;

fail:
  gn_embedded_stop (e);
  return NULL;
}

const char *
gn_embedded_database_url (gn_embedded *embedded)
{
  return embedded ? embedded->database_url : NULL;
}

const char *
gn_embedded_redis_url (gn_embedded *embedded)
{
  return embedded ? embedded->redis_url : NULL;
}

void
gn_embedded_halt (gn_embedded *embedded)
{
  if (embedded != NULL)
    stop_servers (embedded);
}

void
gn_embedded_stop (gn_embedded *embedded)
{
  if (embedded == NULL)
    return;
  stop_servers (embedded);
  if (embedded->supervisor != NULL)
    g_thread_join (embedded->supervisor);
  for (int i = 0; i < 2; i++)
    if (embedded->wake[i] >= 0)
      close (embedded->wake[i]);
  if (embedded->lock_fd >= 0)
    close (embedded->lock_fd);
  server_clear (&embedded->pg);
  server_clear (&embedded->redis);
  g_mutex_clear (&embedded->lock);
  g_cond_clear (&embedded->changed);

  g_free (embedded->data_dir);
  g_free (embedded->run_dir);
  g_free (embedded->pg_groups);
  g_free (embedded->pg_bindir);
  g_free (embedded->pg_data);
  g_free (embedded->database_url);
  g_free (embedded->redis_dir);
  g_free (embedded->redis_socket);
  g_free (embedded->redis_url);
  g_free (embedded);
}
