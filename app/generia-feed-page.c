/* generia-feed-page.c: the node's global feed
 *
 * The newest posts of everyone on the node, as GeneriaPostCards in a GtkListView over a
 * GListStore of GeneriaPosts. The first page loads when someone logs in and on every refresh;
 * further pages load by the cursor of the one before as the person scrolls within one screen
 * of the end (or at once, while the posts do not fill the window), until the node says there
 * are no more. An empty feed says so; a feed that cannot load shows why with a retry button,
 * or, when posts are already shown, the application's "message" shows it as a toast and the
 * posts stay.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-application.h"
#include "generia-feed-page.h"
#include "generia-post-card.h"

#define PAGE_SIZE 20

struct _GeneriaFeedPage
{
  AdwBin             parent_instance;

  GtkStack          *stack;
  AdwStatusPage     *error_status;
  GtkScrolledWindow *scrolled_window;
  GListStore        *posts;

  /* the page load in flight, if any; loading_first_page tells a refresh from a next page */
  GCancellable      *cancellable;
  gboolean           loading_first_page;
  char              *next_cursor;
};

G_DEFINE_FINAL_TYPE (GeneriaFeedPage, generia_feed_page, ADW_TYPE_BIN)

static void load_more (GeneriaFeedPage *self);

static gboolean
is_loading (GeneriaFeedPage *self)
{
  return self->cancellable != NULL;
}

static void
stop_loading (GeneriaFeedPage *self)
{
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
}

static void
show_posts_or_empty (GeneriaFeedPage *self)
{
  gboolean empty = g_list_model_get_n_items (G_LIST_MODEL (self->posts)) == 0;

  gtk_stack_set_visible_child_name (self->stack, empty ? "empty" : "posts");
}

/* Loads the next page when the end of the list is less than one screen away. */
static void
maybe_load_more (GeneriaFeedPage *self)
{
  GtkAdjustment *adjustment = gtk_scrolled_window_get_vadjustment (self->scrolled_window);
  double page = gtk_adjustment_get_page_size (adjustment);
  double left = gtk_adjustment_get_upper (adjustment) - gtk_adjustment_get_value (adjustment) - page;

  if (self->next_cursor != NULL && !is_loading (self) && left < page)
    load_more (self);
}

static void
report_error (GeneriaFeedPage *self,
              const GError    *error)
{
  if (g_list_model_get_n_items (G_LIST_MODEL (self->posts)) == 0)
    {
      adw_status_page_set_description (self->error_status, error->message);
      gtk_stack_set_visible_child_name (self->stack, "error");
    }
  else
    {
      g_signal_emit_by_name (GENERIA_APPLICATION_DEFAULT, "message", error->message);
    }
}

static void
on_page_loaded (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GeneriaFeedPage) self = user_data;
  g_autoptr(GPtrArray) posts = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *next_cursor = NULL;

  posts = generia_client_feed_finish (GENERIA_CLIENT (object), result, &next_cursor, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  g_clear_object (&self->cancellable);

  if (posts == NULL)
    {
      report_error (self, error);
      return;
    }

  if (self->loading_first_page)
    {
      g_list_store_splice (self->posts, 0, g_list_model_get_n_items (G_LIST_MODEL (self->posts)),
                           posts->pdata, posts->len);
      gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (self->scrolled_window), 0);
    }
  else
    {
      g_list_store_splice (self->posts, g_list_model_get_n_items (G_LIST_MODEL (self->posts)), 0,
                           posts->pdata, posts->len);
    }

  g_free (self->next_cursor);
  self->next_cursor = g_steal_pointer (&next_cursor);
  show_posts_or_empty (self);
  maybe_load_more (self);
}

static void
load_page (GeneriaFeedPage *self,
           const char      *cursor)
{
  GeneriaClient *client = generia_application_get_client (GENERIA_APPLICATION_DEFAULT);

  stop_loading (self);
  self->cancellable = g_cancellable_new ();
  self->loading_first_page = cursor == NULL;

  generia_client_feed_async (client, cursor, PAGE_SIZE, self->cancellable, on_page_loaded,
                             g_object_ref (self));
}

static void
load_more (GeneriaFeedPage *self)
{
  g_autofree char *cursor = g_strdup (self->next_cursor);

  load_page (self, cursor);
}

static void
on_session_changed (GeneriaFeedPage    *self,
                    GParamSpec         *pspec,
                    GeneriaApplication *application)
{
  if (generia_application_get_session (application) != NULL)
    {
      generia_feed_page_refresh (self);
    }
  else
    {
      stop_loading (self);
      g_clear_pointer (&self->next_cursor, g_free);
      g_list_store_remove_all (self->posts);
      gtk_stack_set_visible_child_name (self->stack, "loading");
    }
}

static void
on_setup_item (GtkSignalListItemFactory *factory,
               GtkListItem              *item,
               GeneriaFeedPage          *self)
{
  gtk_list_item_set_activatable (item, FALSE);
  gtk_list_item_set_child (item, generia_post_card_new ());
}

static void
on_bind_item (GtkSignalListItemFactory *factory,
              GtkListItem              *item,
              GeneriaFeedPage          *self)
{
  generia_post_card_set_post (GENERIA_POST_CARD (gtk_list_item_get_child (item)),
                              gtk_list_item_get_item (item));
}

static void
on_unbind_item (GtkSignalListItemFactory *factory,
                GtkListItem              *item,
                GeneriaFeedPage          *self)
{
  generia_post_card_set_post (GENERIA_POST_CARD (gtk_list_item_get_child (item)), NULL);
}

static void
generia_feed_page_dispose (GObject *object)
{
  GeneriaFeedPage *self = (GeneriaFeedPage *)object;

  stop_loading (self);
  g_clear_pointer (&self->next_cursor, g_free);

  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_FEED_PAGE);

  G_OBJECT_CLASS (generia_feed_page_parent_class)->dispose (object);
}

static void
generia_feed_page_class_init (GeneriaFeedPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = generia_feed_page_dispose;

  g_type_ensure (GENERIA_TYPE_POST);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/generia/Generia/generia-feed-page.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaFeedPage, stack);
  gtk_widget_class_bind_template_child (widget_class, GeneriaFeedPage, error_status);
  gtk_widget_class_bind_template_child (widget_class, GeneriaFeedPage, scrolled_window);
  gtk_widget_class_bind_template_child (widget_class, GeneriaFeedPage, posts);
  gtk_widget_class_bind_template_callback (widget_class, generia_feed_page_refresh);
  gtk_widget_class_bind_template_callback (widget_class, on_setup_item);
  gtk_widget_class_bind_template_callback (widget_class, on_bind_item);
  gtk_widget_class_bind_template_callback (widget_class, on_unbind_item);
}

static void
generia_feed_page_init (GeneriaFeedPage *self)
{
  GeneriaApplication *application = GENERIA_APPLICATION_DEFAULT;
  GtkAdjustment *adjustment;

  gtk_widget_init_template (GTK_WIDGET (self));

  adjustment = gtk_scrolled_window_get_vadjustment (self->scrolled_window);
  g_signal_connect_object (adjustment, "value-changed",
                           G_CALLBACK (maybe_load_more), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (adjustment, "changed",
                           G_CALLBACK (maybe_load_more), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (application, "notify::session",
                           G_CALLBACK (on_session_changed), self, G_CONNECT_SWAPPED);

  if (generia_application_get_session (application) != NULL)
    generia_feed_page_refresh (self);
}

/**
 * generia_feed_page_get_posts:
 *
 * Returns: (transfer none): the posts shown, newest first, as #GeneriaPost items
 */
GListModel *
generia_feed_page_get_posts (GeneriaFeedPage *self)
{
  g_return_val_if_fail (GENERIA_IS_FEED_PAGE (self), NULL);

  return G_LIST_MODEL (self->posts);
}

/**
 * generia_feed_page_refresh:
 *
 * Loads the newest posts again, in place of those shown.
 */
void
generia_feed_page_refresh (GeneriaFeedPage *self)
{
  g_return_if_fail (GENERIA_IS_FEED_PAGE (self));

  if (g_list_model_get_n_items (G_LIST_MODEL (self->posts)) == 0)
    gtk_stack_set_visible_child_name (self->stack, "loading");

  load_page (self, NULL);
}
