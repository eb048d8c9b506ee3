#!/usr/bin/env bash
# Install a desktop entry (and icon) for the current user that starts IRSAM Review from this checkout's .venv.
#   bash scripts/install-desktop-entry.sh            install / update
#   bash scripts/install-desktop-entry.sh --remove   remove it again
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
entry="$data_home/applications/irsam-review.desktop"
icon="$data_home/icons/hicolor/scalable/apps/irsam-review.svg"

if [ "${1:-}" = "--remove" ]; then
  rm -f "$entry" "$icon"
  echo "removed $entry"
  exit 0
fi
python="$repo/.venv/bin/python"
if [ ! -x "$python" ]; then
  echo "no $python: run 'bash scripts/dev.sh setup' first" >&2
  exit 1
fi
mkdir -p "$(dirname "$entry")" "$(dirname "$icon")"
cp "$repo/resources/irsam-review.svg" "$icon"
# paths with spaces must be quoted in Exec; '|' as the sed separator keeps '/' in paths intact
sed -e "s|@PYTHON@|\"$python\"|" -e "s|@REPO@|$repo|" -e "s|@ICON@|irsam-review|" \
  "$repo/irsam-review.desktop" > "$entry"
chmod 644 "$entry"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$(dirname "$entry")" || true
echo "installed $entry (starts $python -m app.main in $repo)"
