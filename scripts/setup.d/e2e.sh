#!/usr/bin/env bash
# GNU time (/usr/bin/time), which benches/e2e/run.sh uses for the peak RSS of `kbs`. Only the
# end-to-end benchmark needs it, and it falls back to wait4 from Python without it, so a machine
# where it cannot be installed (no apt-get, no root) gets a note instead of a failed set-up.
set -euo pipefail
if [ -x /usr/bin/time ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "setup: note: /usr/bin/time is missing and there is no root to install Debian's 'time'" \
            "package; benches/e2e/run.sh will measure peak RSS without it" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: note: /usr/bin/time is missing and apt-get is not available; benches/e2e/run.sh" \
        "will measure peak RSS without it" >&2
    exit 0
fi
echo "setup: installing Debian's 'time' package (GNU time, for benches/e2e/run.sh)"
$sudo apt-get install -y --no-install-recommends time >/dev/null ||
    { $sudo apt-get update -qq && $sudo apt-get install -y --no-install-recommends time >/dev/null; }
