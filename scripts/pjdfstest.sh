#!/usr/bin/env bash
# Runs pjdfstest, the POSIX file system test suite, in a directory and judges the result.
#
#   scripts/pjdfstest.sh [OPTIONS] DIR [-- TEST_PATTERN...]
#
# DIR is a directory on the file system under test, usually a mount point. pjdfstest works in
# a temporary directory it makes inside DIR and removes at the end. Its whole output goes to a
# log; this script prints one line, `pjdfstest: N passed, N failed, N skipped`, then the
# failures that are not excluded, each with pjdfstest's message.
#
# Options:
#   --config FILE     pjdfstest configuration (default: tests/pjdfstest.toml)
#   --exclude LIST    failures that do not fail the run: a file with one pattern per line
#                     (`#` starts a comment), or patterns separated by commas. A pattern is a
#                     shell glob matched against whole test names: `chown::*`, `*::fifo`.
#                     May be given more than once.
#   --secondary DIR   a directory on another file system, for the EXDEV tests (skipped
#                     without one)
#   --log FILE        where pjdfstest's output goes (default: a new file in target/pjdfstest/)
#   --timeout SECS    stop pjdfstest after this many seconds (default: 900)
# After `--`, test patterns run only the tests whose names contain one of them.
#
# Run it as root: pjdfstest skips the tests that need root (chown, mknod, switching to the
# users `nobody` and `tests`) otherwise. scripts/setup.sh installs pjdfstest and the users.
#
# Exits 0 when every failure is excluded, 1 when a test failed that is not, and 2 when the run
# could not be made or did not finish.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf 'pjdfstest.sh: %s\n' "$*" >&2; }
die() {
    printf 'pjdfstest.sh: error: %s\n' "$*" >&2
    exit 2
}
usage() {
    # The comment block at the top of this file is the help.
    sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

config=$repo/tests/pjdfstest.toml
excludes=()
secondary=
log=
timeout_secs=900
dir=
patterns=()

while [[ $# -gt 0 ]]; do
    case $1 in
    --config | --exclude | --secondary | --log | --timeout)
        [[ $# -ge 2 ]] || die "$1 needs a value"
        case $1 in
        --config) config=$2 ;;
        --exclude) excludes+=("$2") ;;
        --secondary) secondary=$2 ;;
        --log) log=$2 ;;
        --timeout) timeout_secs=$2 ;;
        esac
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        patterns=("$@")
        break
        ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
        [[ -z $dir ]] || die "one directory only, got $dir and $1 (see --help)"
        dir=$1
        shift
        ;;
    esac
done

[[ -n $dir ]] || die "no directory given (see --help)"
[[ -d $dir ]] || die "$dir is not a directory"
[[ -f $config ]] || die "configuration file $config does not exist"
[[ -z $secondary || -d $secondary ]] || die "secondary directory $secondary does not exist"
[[ $timeout_secs =~ ^[0-9]+$ && $timeout_secs -gt 0 ]] ||
    die "--timeout takes a whole number of seconds, got $timeout_secs"

if [[ -n $secondary && "$(stat -c %d "$dir")" == "$(stat -c %d "$secondary")" ]]; then
    die "$secondary is on the same file system as $dir; the EXDEV tests need another one"
fi

pjdfstest=$(command -v pjdfstest || true)
if [[ -z $pjdfstest && -x "${CARGO_HOME:-$HOME/.cargo}/bin/pjdfstest" ]]; then
    pjdfstest=${CARGO_HOME:-$HOME/.cargo}/bin/pjdfstest
fi
[[ -n $pjdfstest ]] || die "pjdfstest is not installed; run scripts/setup.sh"

if [[ $(id -u) -ne 0 ]]; then
    say "warning: not running as root, so pjdfstest skips the tests that need root"
fi

# Exclusion patterns, from files or comma-separated lists.
exclude_patterns=()
for list in "${excludes[@]}"; do
    # Test names have no slash, so a path that is not a file is a mistake.
    if [[ $list == */* && ! -f $list ]]; then
        die "exclusion list $list does not exist"
    elif [[ -f $list ]]; then
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line%%#*}
            read -r pattern _ <<<"$line" || true
            [[ -z ${pattern:-} ]] || exclude_patterns+=("$pattern")
        done <"$list"
    else
        IFS=, read -ra items <<<"$list"
        for pattern in "${items[@]}"; do
            pattern=${pattern//[[:space:]]/}
            [[ -z $pattern ]] || exclude_patterns+=("$pattern")
        done
    fi
done

if [[ -z $log ]]; then
    log_dir=${CARGO_TARGET_DIR:-$repo/target}/pjdfstest
    mkdir -p "$log_dir"
    log=$(mktemp -p "$log_dir" "pjdfstest-$(date +%Y%m%d-%H%M%S)-XXXX.log")
fi

args=(--configuration-file "$config" --path "$dir")
[[ -z $secondary ]] || args+=(--secondary-fs "$secondary")
[[ ${#patterns[@]} -eq 0 ]] || args+=(-- "${patterns[@]}")

# pjdfstest works in a `.tmpXXXXXX` directory that it removes at the end; one left behind
# after a finished run means removing a tree failed on the file system under test.
temp_dirs() { find "$dir" -mindepth 1 -maxdepth 1 -name '.tmp*' -printf '%f\n' | sort; }
temp_dirs_before=$(temp_dirs)

status=0
NO_COLOR=1 timeout --kill-after=10 "$timeout_secs" "$pjdfstest" "${args[@]}" >"$log" 2>&1 ||
    status=$?
say "log: $log"

if [[ $status -eq 124 || $status -eq 137 ]]; then
    tail -n 5 "$log" >&2
    die "pjdfstest did not finish within $timeout_secs s"
fi
# pjdfstest colours its output when it thinks it may; take the colours out.
output=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
summary=$(grep '^Summary: ' <<<"$output" || true)
if [[ -z $summary ]]; then
    tail -n 20 "$log" >&2
    die "pjdfstest stopped before its summary (exit status $status)"
fi

left_behind=$(comm -13 <(printf '%s\n' "$temp_dirs_before") <(temp_dirs) | sed '/^$/d')
for name in $left_behind; do
    say "warning: pjdfstest could not remove its working directory $dir/$name"
done

# One line per test: `STATUS<tab>NAME`, STATUS being ok, skipped, FAILED, `failed as expected`
# or `PASSED UNEXPECTEDLY` (the last two for the configuration's expected_failures).
results=$(awk '
    match($0, / +(ok|skipped|FAILED|failed as expected|PASSED UNEXPECTEDLY)$/) && $0 !~ /^[ \t]/ {
        name = substr($0, 1, RSTART - 1)
        st = substr($0, RSTART, RLENGTH); sub(/^ +/, "", st)
        print st "\t" name
    }' <<<"$output")

excluded() {
    local pattern
    for pattern in "${exclude_patterns[@]}"; do
        # shellcheck disable=SC2053 # the pattern is a glob on purpose
        [[ $1 == $pattern ]] && return 0
    done
    return 1
}

passed=0 failed=0 skipped=0
failures=()
excused=0
declare -A pattern_used=()
while IFS=$'\t' read -r st name; do
    [[ -n $name ]] || continue
    case $st in
    ok | "PASSED UNEXPECTEDLY") passed=$((passed + 1)) ;;
    skipped) skipped=$((skipped + 1)) ;;
    FAILED | "failed as expected")
        failed=$((failed + 1))
        if [[ $st == "failed as expected" ]]; then
            excused=$((excused + 1))
        elif excluded "$name"; then
            excused=$((excused + 1))
            for pattern in "${exclude_patterns[@]}"; do
                # shellcheck disable=SC2053 # the pattern is a glob on purpose
                [[ $name != $pattern ]] || pattern_used[$pattern]=1
            done
        else
            failures+=("$name")
        fi
        ;;
    esac
done <<<"$results"

total=$(sed -n 's/.* \([0-9][0-9]*\) total$/\1/p' <<<"$summary")
if [[ "$((passed + failed + skipped))" != "$total" ]]; then
    say "pjdfstest says: $summary"
    die "read $((passed + failed + skipped)) results from $log where pjdfstest reports $total"
fi

line="pjdfstest: $passed passed, $failed failed, $skipped skipped"
[[ $excused -eq 0 ]] || line+=" ($excused of the failures excluded)"
printf '%s\n' "$line"

for pattern in "${exclude_patterns[@]}"; do
    [[ -n ${pattern_used[$pattern]:-} ]] ||
        say "note: the exclusion $pattern matched no failure; remove it if it is fixed"
done
if grep -q ' PASSED UNEXPECTEDLY$' <<<"$output"; then
    say "note: some expected_failures in $config passed; remove them from the list"
fi

if [[ ${#failures[@]} -gt 0 ]]; then
    say "failures not excluded:"
    for name in "${failures[@]}"; do
        # The line after the FAILED line, indented by a tab, is pjdfstest's message.
        message=$(awk -v name="$name" '
            found == 1 { sub(/^\t/, ""); print; found = 2 }
            found == 0 && index($0, name " ") == 1 && / FAILED$/ { found = 1 }' <<<"$output")
        printf '  %s: %s\n' "$name" "${message:-(no message)}" >&2
    done
    exit 1
fi
