#!/usr/bin/env bash
# Installs what isolated grading needs: Debian's `bubblewrap` (/usr/bin/bwrap), which
# `coursekit grade` runs each submission's kernel under (see coursekit/grading/isolation.py).
# As root (or with passwordless sudo) it installs the package with apt when bwrap is missing; otherwise
# it prints the command to run and exits 1, or 0 with --optional (from `make test`: the isolation tests
# then skip, and `coursekit grade` says in its reports that submissions were not isolated).
# Last, it checks that bwrap can create the namespaces the grader uses (as root it can; without root it
# needs unprivileged user namespaces) and says so.
set -euo pipefail
OPTIONAL=0
[ "${1:-}" = "--optional" ] && OPTIONAL=1

give_up() {
    echo "bwrap set-up: $1" >&2
    if [ "$OPTIONAL" -eq 1 ]; then
        echo "bwrap set-up: continuing; grading runs without isolation and its isolation tests skip" >&2
        exit 0
    fi
    exit 1
}

if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "bwrap set-up: bubblewrap is missing and installing it needs root. Run:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y bubblewrap" >&2
        give_up "bubblewrap is not installed"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        give_up "bubblewrap is missing and this system has no apt-get; install bubblewrap with its package manager"
    fi
    echo "bwrap set-up: apt-get install bubblewrap"
    $SUDO apt-get update -qq || give_up "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bubblewrap >/dev/null \
        || give_up "apt-get install bubblewrap failed"
fi

if bwrap --die-with-parent --unshare-all --unshare-user --uid 65534 --gid 65534 \
        --ro-bind / / --proc /proc --dev /dev true 2>/dev/null; then
    echo "bwrap set-up: $(bwrap --version) can isolate submissions here"
else
    give_up "$(bwrap --version) is installed but cannot create namespaces here (no root, and unprivileged user namespaces are disabled: sysctl kernel.unprivileged_userns_clone=1)"
fi
