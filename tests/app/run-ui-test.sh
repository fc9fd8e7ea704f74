#!/bin/sh
# run-ui-test.sh COMMAND [ARGS...]
#
# Runs a GTK test under a private X server (Xvfb) and a private D-Bus session with an
# unlocked gnome-keyring, in a throwaway HOME, so that the app finds a working Secret Service
# exactly as on a desktop. The wait loop matters: without it about 1 run in 30 fails with
# "Cannot create an item in a locked collection".
set -u

home=$(mktemp -d "${TMPDIR:-/tmp}/generia-ui-home.XXXXXX") || exit 1
trap 'rm -rf "$home"' EXIT

export HOME="$home"
export XDG_DATA_HOME="$home/.local/share"
export XDG_CONFIG_HOME="$home/.config"
export XDG_CACHE_HOME="$home/.cache"
export XDG_RUNTIME_DIR="$home/runtime"
mkdir -m 0700 "$XDG_RUNTIME_DIR"
# No desktop portal either: libadwaita would activate one on the private bus.
export GTK_A11Y=none NO_AT_BRIDGE=1 GSETTINGS_BACKEND=memory ADW_DISABLE_PORTAL=1

# The test's G_DEBUG (fatal-warnings) is for the test alone, not for the keyring daemon or
# other services the private bus starts.
test_g_debug=${G_DEBUG-}
unset G_DEBUG

xvfb-run -a -s '-screen 0 1280x800x24' dbus-run-session -- sh -c '
  echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  for i in $(seq 100); do gdbus call --session --dest org.freedesktop.DBus \
    --object-path /org/freedesktop/DBus --method org.freedesktop.DBus.NameHasOwner \
    org.freedesktop.secrets | grep -q true && break; sleep 0.05; done
  exec env G_DEBUG="$0" "$@"' "$test_g_debug" "$@"
