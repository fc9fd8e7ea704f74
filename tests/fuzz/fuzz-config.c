/* fuzz-config.c - gn_config_load from a config file (GKeyFile, every option's parser and
 * bounds), then gn_config_dump of the result (which masks passwords in URLs).
 *
 * Input: the file's contents.  The environment is empty, so only the file counts.  Checked:
 * a load either succeeds or sets an error, and a dump of a loaded configuration loads again. */
#include "fuzz.h"

#include <unistd.h>

#include "config.h"

static char *path;
static char *dump_path;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  g_autofree char *dir = g_dir_make_tmp ("fuzz-config-XXXXXX", NULL);
  path = g_build_filename (dir, "generia-node.conf", NULL);
  dump_path = g_build_filename (dir, "dump.conf", NULL);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *envp[] = { NULL };
  GError *error = NULL;

  fuzz_write_file (path, data, size);
  gn_config *config = gn_config_new_default ();
  gn_config_set_data_dir (config, "/nonexistent/generia-fuzz");
  if (gn_config_load (config, path, envp, &error)) {
    char *dump = gn_config_dump (config);
    gn_config *again = gn_config_new_default ();
    gn_config_set_data_dir (again, "/nonexistent/generia-fuzz");
    fuzz_write_file (dump_path, (const uint8_t *)dump, strlen (dump));
    GError *again_error = NULL;
    gboolean loaded = gn_config_load (again, dump_path, envp, &again_error);
    if (!loaded)
      g_printerr ("the dump does not load again: %s\n%s", again_error->message, dump);
    /* A masked password ("***") is still a valid URL, so every dump loads. */
    FUZZ_ASSERT (loaded);
    gn_config_free (again);
    g_free (dump);
  } else {
    FUZZ_ASSERT (error != NULL && error->message != NULL);
    g_error_free (error);
  }
  gn_config_free (config);
  return 0;
}
