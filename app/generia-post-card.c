/* generia-post-card.c: one post in the feed
 *
 * The author, how long ago the post was made, its image, a hint when it is a carousel, and the
 * caption with its hashtags in bold. The image is the post's signed media URL, loaded with
 * the app's image loader: a card scrolled back into view finds it in the loader's cache and
 * shows it at once; otherwise an empty paintable of the image's size keeps its place until it
 * arrives, so that the list does not jump. The feed's list view recycles cards: setting another
 * post cancels the previous one's wait for its image.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-application.h"
#include "generia-post-card.h"

struct _GeneriaPostCard
{
  AdwBin        parent_instance;

  AdwAvatar    *avatar;
  GtkLabel     *username_label;
  GtkLabel     *time_label;
  GtkPicture   *picture;
  GtkLabel     *photos_label;
  GtkLabel     *caption_label;

  GeneriaPost  *post;
  GCancellable *image_cancellable;
};

G_DEFINE_FINAL_TYPE (GeneriaPostCard, generia_post_card, ADW_TYPE_BIN)

enum {
  PROP_0,
  PROP_POST,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static char *
format_relative_time (GDateTime *time)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_utc ();
  g_autoptr(GDateTime) local = NULL;
  GTimeSpan span = MAX (0, g_date_time_difference (now, time));
  gint64 minutes = span / G_TIME_SPAN_MINUTE;
  gint64 hours = span / G_TIME_SPAN_HOUR;
  gint64 days = span / G_TIME_SPAN_DAY;

  if (minutes < 1)
    return g_strdup (_("Just now"));
  if (hours < 1)
    /* Translators: how long ago a post was made */
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d minute ago", "%d minutes ago", minutes),
                            (int)minutes);
  if (days < 1)
    /* Translators: how long ago a post was made */
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d hour ago", "%d hours ago", hours),
                            (int)hours);
  if (days < 7)
    /* Translators: how long ago a post was made */
    return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d day ago", "%d days ago", days),
                            (int)days);

  local = g_date_time_to_local (time);
  /* Translators: the date of an older post, as GDateTime format codes ("November 26, 2026"); %B is the month, %-d the day without a leading zero */
  return g_date_time_format (local, _("%B %-d, %Y"));
}

/* The caption as Pango markup, with every #hashtag in bold. */
static char *
caption_markup (const char *caption)
{
  g_autoptr(GString) markup = g_string_new (NULL);
  const char *p = caption;

  while (*p != '\0')
    {
      const char *end = p;

      if (*p == '#')
        {
          end = g_utf8_next_char (p);
          while (*end != '\0' &&
                 (g_unichar_isalnum (g_utf8_get_char (end)) || *end == '_'))
            end = g_utf8_next_char (end);
        }

      if (end - p > 1)
        {
          g_autofree char *tag = g_markup_escape_text (p, end - p);

          g_string_append_printf (markup, "<b>%s</b>", tag);
        }
      else
        {
          g_autofree char *text = NULL;

          end = g_utf8_next_char (p);
          while (*end != '\0' && *end != '#')
            end = g_utf8_next_char (end);
          text = g_markup_escape_text (p, end - p);
          g_string_append (markup, text);
        }

      p = end;
    }

  return g_string_free (g_steal_pointer (&markup), FALSE);
}

static void
on_image_loaded (GObject      *object,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GeneriaPostCard) self = user_data;
  g_autoptr(GdkTexture) texture = NULL;
  g_autoptr(GError) error = NULL;

  if (!(texture = generia_image_loader_load_finish (GENERIA_IMAGE_LOADER (object), result,
                                                    &error)))
    {
      /* The placeholder stays: the feed is still worth reading without one image. */
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_debug ("Cannot show an image: %s", error->message);
      return;
    }

  gtk_picture_set_paintable (self->picture, GDK_PAINTABLE (texture));
}

static void
show_post (GeneriaPostCard *self)
{
  GeneriaPost *post = self->post;
  GeneriaImageLoader *loader = generia_application_get_image_loader (GENERIA_APPLICATION_DEFAULT);
  const char *media_url;
  g_autoptr(GdkTexture) cached = NULL;
  g_autoptr(GdkPaintable) placeholder = NULL;
  g_autofree char *time = NULL;
  g_autofree char *markup = NULL;
  g_autofree char *photos = NULL;
  guint n_media;

  g_cancellable_cancel (self->image_cancellable);
  g_clear_object (&self->image_cancellable);

  if (post == NULL)
    {
      gtk_picture_set_paintable (self->picture, NULL);
      return;
    }

  time = format_relative_time (generia_post_get_created_at (post));
  markup = caption_markup (generia_post_get_caption (post));
  n_media = generia_post_get_n_media (post);
  if (n_media > 1)
    /* Translators: shown under the first photo of a post that has several */
    photos = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%u photo", "%u photos", n_media),
                              n_media);

  adw_avatar_set_text (self->avatar, generia_post_get_username (post));
  gtk_label_set_text (self->username_label, generia_post_get_username (post));
  gtk_label_set_text (self->time_label, time);
  gtk_label_set_markup (self->caption_label, markup);
  gtk_widget_set_visible (GTK_WIDGET (self->caption_label), markup[0] != '\0');
  gtk_label_set_text (self->photos_label, photos != NULL ? photos : "");
  gtk_widget_set_visible (GTK_WIDGET (self->photos_label), photos != NULL);

  media_url = generia_post_get_media_url (post);
  if (media_url != NULL && (cached = generia_image_loader_lookup (loader, media_url)) != NULL)
    {
      gtk_picture_set_paintable (self->picture, GDK_PAINTABLE (cached));
      return;
    }

  if (generia_post_get_width (post) > 0 && generia_post_get_height (post) > 0)
    placeholder = gdk_paintable_new_empty (generia_post_get_width (post),
                                           generia_post_get_height (post));
  else
    placeholder = gdk_paintable_new_empty (1, 1);
  gtk_picture_set_paintable (self->picture, placeholder);

  if (media_url != NULL)
    {
      self->image_cancellable = g_cancellable_new ();
      generia_image_loader_load_async (loader, media_url, self->image_cancellable,
                                       on_image_loaded, g_object_ref (self));
    }
}

static void
generia_post_card_dispose (GObject *object)
{
  GeneriaPostCard *self = (GeneriaPostCard *)object;

  g_cancellable_cancel (self->image_cancellable);
  g_clear_object (&self->image_cancellable);
  g_clear_object (&self->post);

  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_POST_CARD);

  G_OBJECT_CLASS (generia_post_card_parent_class)->dispose (object);
}

static void
generia_post_card_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  GeneriaPostCard *self = GENERIA_POST_CARD (object);

  switch (prop_id)
    {
    case PROP_POST:
      g_value_set_object (value, self->post);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_post_card_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  GeneriaPostCard *self = GENERIA_POST_CARD (object);

  switch (prop_id)
    {
    case PROP_POST:
      generia_post_card_set_post (self, g_value_get_object (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_post_card_class_init (GeneriaPostCardClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = generia_post_card_dispose;
  object_class->get_property = generia_post_card_get_property;
  object_class->set_property = generia_post_card_set_property;

  properties[PROP_POST] =
    g_param_spec_object ("post", NULL, NULL, GENERIA_TYPE_POST,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/generia/Generia/generia-post-card.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaPostCard, avatar);
  gtk_widget_class_bind_template_child (widget_class, GeneriaPostCard, username_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaPostCard, time_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaPostCard, picture);
  gtk_widget_class_bind_template_child (widget_class, GeneriaPostCard, photos_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaPostCard, caption_label);
}

static void
generia_post_card_init (GeneriaPostCard *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GtkWidget *
generia_post_card_new (void)
{
  return g_object_new (GENERIA_TYPE_POST_CARD, NULL);
}

/**
 * generia_post_card_get_post:
 *
 * Returns: (transfer none) (nullable): the post shown
 */
GeneriaPost *
generia_post_card_get_post (GeneriaPostCard *self)
{
  g_return_val_if_fail (GENERIA_IS_POST_CARD (self), NULL);

  return self->post;
}

/**
 * generia_post_card_set_post:
 * @post: (nullable): the post to show
 */
void
generia_post_card_set_post (GeneriaPostCard *self,
                            GeneriaPost     *post)
{
  g_return_if_fail (GENERIA_IS_POST_CARD (self));
  g_return_if_fail (post == NULL || GENERIA_IS_POST (post));

  if (!g_set_object (&self->post, post))
    return;

  show_post (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_POST]);
}
