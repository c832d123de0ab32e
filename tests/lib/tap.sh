# SPDX-License-Identifier: LGPL-2.1-or-later
# TAP output and assertions shared by the shell test harnesses (tests/integration/lib.sh, tests/lib/hosts.sh).
tap_n=0
tap_failed=0

ok() {
        tap_n=$((tap_n + 1))
        echo "ok $tap_n - $1"
}

not_ok() {
        tap_n=$((tap_n + 1))
        tap_failed=1
        echo "not ok $tap_n - $1"
}

# diag TEXT...: '#' lines
diag() {
        printf '%s\n' "$@" | sed 's/^/#   /'
}

check() {
        local what=$1
        shift
        if "$@"; then ok "$what"; else not_ok "$what"; fi
}

expect_eq() {
        if [ "$2" = "$3" ]; then
                ok "$1"
        else
                not_ok "$1"
                echo "#   expected:"
                printf '%s\n' "$2" | sed 's/^/#     /'
                echo "#   actual:"
                printf '%s\n' "$3" | sed 's/^/#     /'
        fi
}

expect_contains() {
        case "$3" in
        *"$2"*) ok "$1" ;;
        *)
                not_ok "$1"
                printf '#   wanted: %s\n' "$2"
                printf '%s\n' "$3" | sed 's/^/#   in:     /'
                ;;
        esac
}

skip() {
        tap_n=$((tap_n + 1))
        echo "ok $tap_n - $1 # SKIP $2"
}
