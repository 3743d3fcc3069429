#!/usr/bin/env bash
# Measures the still-image pipeline (rookery-media-pipeline's process_image: decode, EXIF
# orientation, original + lossy WebP, 640 px preview + WebP, blurhash) on a generated 12 MP
# photo-like JPEG, next to libvips' vipsthumbnail making a single 640 px JPEG preview of the
# same file (the least any server does per upload; vips also decodes at 1/8 scale from the
# JPEG's DCT, which a pipeline that stores the full-size original cannot):
#  1. the median of RUNS single-threaded runs of each, both pinned to one core (taskset);
#  2. images/s of the pipeline with both cores busy (2 threads in a loop).
# Release build (CARGO_TARGET_DIR is respected). Prints a table on stdout, details on stderr.
#   deploy/dev/bench-media.sh         RUNS=n (default 15)  SECONDS_2T=s (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/dev/lib.sh
source deploy/dev/lib.sh

RUNS="${RUNS:-15}"
SECONDS_2T="${SECONDS_2T:-10}"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"

# Same shape as deps.sh's apt_install: only root installs, and a stale package list is
# refreshed once.
ensure_vipsthumbnail() {
    command -v vipsthumbnail >/dev/null 2>&1 && return 0
    ((EUID == 0)) || die "vipsthumbnail is missing; install it with: sudo apt-get install -y libvips-tools"
    command -v apt-get >/dev/null 2>&1 || die "vipsthumbnail is missing and apt-get is not available"
    log "installing libvips-tools (apt-get)"
    local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install libvips-tools >&2 ||
        { "${apt[@]}" update >&2 && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install libvips-tools >&2; } ||
        die "could not install libvips-tools"
    command -v vipsthumbnail >/dev/null 2>&1 || die "vipsthumbnail not found after installing libvips-tools"
}
ensure_vipsthumbnail

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
log "building the pipeline_bench example (release)"
cargo build --release -q -p rookery-media-pipeline --example pipeline_bench
BENCH="$TARGET/examples/pipeline_bench"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rookery-bench-media.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
IMG="$WORK/photo.jpg"
"$BENCH" --generate "$IMG" >&2

PIN=()
if command -v taskset >/dev/null 2>&1; then
    PIN=(taskset -c 0)
else
    log "taskset not found: single-thread runs are not pinned"
fi

result() { sed -n "s/^RESULT $1=//p" <<<"$2"; }

log "pipeline: $RUNS runs on one core"
single="$("${PIN[@]}" "$BENCH" "$IMG" --runs "$RUNS")"
grep -v '^RESULT' <<<"$single" >&2
pipeline_ms="$(result pipeline_median_ms "$single")"

log "pipeline: 2 threads for ${SECONDS_2T}s"
multi="$("$BENCH" "$IMG" --threads 2 --seconds "$SECONDS_2T")"
grep -v '^RESULT' <<<"$multi" >&2
rate="$(result images_per_s "$multi")"

# Median wall time in ms of RUNS runs of a command (after one warm-up run).
median_ms() {
    local i start end times=()
    "$@" >/dev/null
    for ((i = 0; i < RUNS; i++)); do
        start=$(date +%s%N)
        "$@" >/dev/null
        end=$(date +%s%N)
        times+=("$(((end - start) / 1000))")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int(NR / 2) + 1] / 1000 }'
}

# vips runs single-threaded too (it would otherwise start worker threads on the one core).
export VIPS_CONCURRENCY=1
log "vipsthumbnail: $RUNS runs on one core"
vips_ms="$(median_ms "${PIN[@]}" vipsthumbnail "$IMG" --size 640x640 -o "$WORK/small.jpg[Q=85]")"
# vipsthumbnail is a process per image: its start-up (loading libvips) is part of its time.
# A 16x16 image shows how much.
"$BENCH" --generate "$WORK/tiny.jpg" --size 16x16 >/dev/null
vips_start_ms="$(median_ms "${PIN[@]}" vipsthumbnail "$WORK/tiny.jpg" --size 640x640 -o "$WORK/tiny-small.jpg[Q=85]")"

ratio="$(awk -v a="$pipeline_ms" -v b="$vips_ms" 'BEGIN { printf "%.1f", a / b }')"
printf '\n%-44s %10s\n' "12 MP JPEG (4000x3000), median of $RUNS" ""
printf '%-44s %10s ms\n' "pipeline, one core (all variants)" "$pipeline_ms"
printf '%-44s %10s ms\n' "vipsthumbnail 640px JPEG, one core" "$vips_ms"
printf '%-44s %10s ms\n' "  of which process start-up (16x16 image)" "$vips_start_ms"
printf '%-44s %10sx\n' "ratio pipeline / vipsthumbnail" "$ratio"
printf '%-44s %10s images/s\n' "pipeline, 2 threads on 2 cores" "$rate"
