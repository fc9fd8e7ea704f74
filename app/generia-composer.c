/* generia-composer.c: a new post: a photo and a caption
 *
 * A modal window over the main one. The person picks a photo (GtkFileChooserNative, so that
 * the desktop's own chooser or portal is used), sees it, writes a caption of at most 2200
 * characters with a counter, and shares: the file's bytes, read once when it was picked, go
 * up as a multipart upload, the new media becomes a post, "posted" is emitted and the window
 * closes. While that runs a spinner turns and the form is locked; what goes wrong is shown
 * above the form and the person can try again.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-application.h"
#include "generia-composer.h"

struct _GeneriaComposer
{
  AdwWindow             parent_instance;

  GtkButton            *share_button;
  GtkSpinner           *spinner;
  GtkWidget            *form;
  GtkLabel             *error_label;
  GtkPicture           *preview;
  GtkButton            *choose_button;
  GtkTextView          *caption_view;
  GtkLabel             *counter_label;

  GtkFileChooserNative *chooser;
  GFile                *file;
  GBytes               *bytes;
  char                 *content_type;
  GCancellable         *cancellable;
};

G_DEFINE_FINAL_TYPE (GeneriaComposer, generia_composer, ADW_TYPE_WINDOW)

enum {
  PROP_0,
  PROP_FILE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  POSTED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static char *
dup_caption (GeneriaComposer *self)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (self->caption_view);
  GtkTextIter start;
  GtkTextIter end;

  gtk_text_buffer_get_bounds (buffer, &start, &end);
  return gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
}

static gboolean
is_busy (GeneriaComposer *self)
{
  return gtk_spinner_get_spinning (self->spinner);
}

static void
update_form (GeneriaComposer *self)
{
  int length = gtk_text_buffer_get_char_count (gtk_text_view_get_buffer (self->caption_view));
  g_autofree char *counter = NULL;

  /* Translators: characters used of the most a caption may have, e.g. "12/2200" */
  counter = g_strdup_printf (_("%d/%d"), length, GENERIA_CLIENT_CAPTION_MAX_CHARS);
  gtk_label_set_text (self->counter_label, counter);
  if (length > GENERIA_CLIENT_CAPTION_MAX_CHARS)
    gtk_widget_add_css_class (GTK_WIDGET (self->counter_label), "error");
  else
    gtk_widget_remove_css_class (GTK_WIDGET (self->counter_label), "error");

  gtk_widget_set_sensitive (self->form, !is_busy (self));
  gtk_widget_set_sensitive (GTK_WIDGET (self->share_button),
                            self->bytes != NULL && !is_busy (self) &&
                            length <= GENERIA_CLIENT_CAPTION_MAX_CHARS);
}

static void
show_error (GeneriaComposer *self,
            const char      *message)
{
  gtk_label_set_text (self->error_label, message != NULL ? message : "");
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), message != NULL);
}

static void
set_busy (GeneriaComposer *self,
          gboolean         busy)
{
  gtk_spinner_set_spinning (self->spinner, busy);
  update_form (self);
}

static void
on_post_created (GObject      *object,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GeneriaComposer) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *post_id = NULL;

  post_id = generia_client_create_post_finish (GENERIA_CLIENT (object), result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  set_busy (self, FALSE);
  if (post_id == NULL)
    {
      show_error (self, error->message);
      return;
    }

  g_signal_emit (self, signals[POSTED], 0, post_id);
  gtk_window_destroy (GTK_WINDOW (self));
}

static void
on_media_uploaded (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GeneriaComposer) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *media_id = NULL;
  g_autofree char *caption = NULL;

  media_id = generia_client_upload_media_finish (GENERIA_CLIENT (object), result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  if (media_id == NULL)
    {
      set_busy (self, FALSE);
      show_error (self, error->message);
      return;
    }

  caption = g_strstrip (dup_caption (self));
  generia_client_create_post_async (GENERIA_CLIENT (object), caption, media_id,
                                    self->cancellable, on_post_created, g_object_ref (self));
}

static void
on_share_clicked (GeneriaComposer *self)
{
  GeneriaClient *client = generia_application_get_client (GENERIA_APPLICATION_DEFAULT);
  g_autofree char *basename = NULL;

  if (self->bytes == NULL || is_busy (self))
    return;

  show_error (self, NULL);
  set_busy (self, TRUE);

  basename = g_file_get_basename (self->file);
  generia_client_upload_media_async (client, self->bytes, basename, self->content_type,
                                     self->cancellable, on_media_uploaded, g_object_ref (self));
}

static void
on_file_loaded (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GeneriaComposer) self = user_data;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *basename = NULL;
  g_autofree char *guessed = NULL;
  gsize size;
  const guchar *data;

  bytes = g_file_load_bytes_finish (G_FILE (object), result, NULL, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  set_busy (self, FALSE);
  if (bytes == NULL)
    {
      show_error (self, error->message);
      return;
    }

  data = g_bytes_get_data (bytes, &size);
  basename = g_file_get_basename (G_FILE (object));
  guessed = g_content_type_guess (basename, data, size, NULL);
  g_free (self->content_type);
  self->content_type = g_content_type_get_mime_type (guessed);
  if (self->content_type == NULL)
    self->content_type = g_strdup ("application/octet-stream");
  self->bytes = g_steal_pointer (&bytes);

  /* Without a preview the node still decides: it may know formats GTK cannot show. */
  if ((texture = gdk_texture_new_from_bytes (self->bytes, NULL)))
    gtk_picture_set_paintable (self->preview, GDK_PAINTABLE (texture));
  else
    show_error (self, _("Can't show a preview of this file."));
  gtk_widget_set_visible (GTK_WIDGET (self->preview), texture != NULL);
  gtk_button_set_label (self->choose_button, _("_Choose Another Photo…"));

  update_form (self);
}

static void
on_chooser_response (GeneriaComposer      *self,
                     int                   response,
                     GtkFileChooserNative *chooser)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));

      generia_composer_set_file (self, file);
    }

  g_clear_object (&self->chooser);
}

static void
on_choose_clicked (GeneriaComposer *self)
{
  g_autoptr(GtkFileFilter) filter = gtk_file_filter_new ();
  static const char * const types[] = {
    "image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif",
  };

  gtk_file_filter_set_name (filter, _("Photos"));
  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    gtk_file_filter_add_mime_type (filter, types[i]);

  g_clear_object (&self->chooser);
  self->chooser = gtk_file_chooser_native_new (_("Choose a Photo"), GTK_WINDOW (self),
                                               GTK_FILE_CHOOSER_ACTION_OPEN, _("_Open"),
                                               _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), filter);
  g_signal_connect_object (self->chooser, "response", G_CALLBACK (on_chooser_response), self,
                           G_CONNECT_SWAPPED);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
generia_composer_dispose (GObject *object)
{
  GeneriaComposer *self = (GeneriaComposer *)object;

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->chooser);
  g_clear_object (&self->file);
  g_clear_pointer (&self->bytes, g_bytes_unref);
  g_clear_pointer (&self->content_type, g_free);

  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_COMPOSER);

  G_OBJECT_CLASS (generia_composer_parent_class)->dispose (object);
}

static void
generia_composer_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  GeneriaComposer *self = GENERIA_COMPOSER (object);

  switch (prop_id)
    {
    case PROP_FILE:
      g_value_set_object (value, self->file);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_composer_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  GeneriaComposer *self = GENERIA_COMPOSER (object);

  switch (prop_id)
    {
    case PROP_FILE:
      generia_composer_set_file (self, g_value_get_object (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_composer_class_init (GeneriaComposerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = generia_composer_dispose;
  object_class->get_property = generia_composer_get_property;
  object_class->set_property = generia_composer_set_property;

  properties[PROP_FILE] =
    g_param_spec_object ("file", NULL, NULL, G_TYPE_FILE,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * GeneriaComposer::posted:
   * @post_id: the new post's id
   *
   * The post is on the node; the composer closes right after.
   */
  signals[POSTED] =
    g_signal_new ("posted", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_STRING);

  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/generia/Generia/generia-composer.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, share_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, spinner);
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, form);
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, error_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, preview);
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, choose_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, caption_view);
  gtk_widget_class_bind_template_child (widget_class, GeneriaComposer, counter_label);
  gtk_widget_class_bind_template_callback (widget_class, on_share_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_choose_clicked);
}

static void
generia_composer_init (GeneriaComposer *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));

  self->cancellable = g_cancellable_new ();
  g_signal_connect_object (gtk_text_view_get_buffer (self->caption_view), "changed",
                           G_CALLBACK (update_form), self, G_CONNECT_SWAPPED);
  update_form (self);
}

/**
 * generia_composer_new:
 * @parent: the window the composer is modal for
 */
GeneriaComposer *
generia_composer_new (GtkWindow *parent)
{
  g_return_val_if_fail (GTK_IS_WINDOW (parent), NULL);

  return g_object_new (GENERIA_TYPE_COMPOSER, "transient-for", parent, NULL);
}

/**
 * generia_composer_get_file:
 *
 * Returns: (transfer none) (nullable): the photo picked
 */
GFile *
generia_composer_get_file (GeneriaComposer *self)
{
  g_return_val_if_fail (GENERIA_IS_COMPOSER (self), NULL);

  return self->file;
}

/**
 * generia_composer_set_file:
 * @file: the photo to post
 *
 * Reads @file and shows it; "Share" works once it is read. The file chooser calls this too.
 */
void
generia_composer_set_file (GeneriaComposer *self,
                           GFile           *file)
{
  g_return_if_fail (GENERIA_IS_COMPOSER (self));
  g_return_if_fail (G_IS_FILE (file));

  if (is_busy (self) || !g_set_object (&self->file, file))
    return;

  g_clear_pointer (&self->bytes, g_bytes_unref);
  show_error (self, NULL);
  set_busy (self, TRUE);
  g_file_load_bytes_async (file, self->cancellable, on_file_loaded, g_object_ref (self));

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FILE]);
}
