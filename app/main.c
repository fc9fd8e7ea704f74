/* main.c: the generia desktop client
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>
#include <locale.h>

#include "generia-application.h"

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GeneriaApplication) application = NULL;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  application = generia_application_new ();

  return g_application_run (G_APPLICATION (application), argc, argv);
}
