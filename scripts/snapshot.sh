#!/usr/bin/env bash
# Copy a finished study's report into reports/<study>/ (the committed snapshot the README quotes).
# Running a study writes only under results/<study>/, so it never dirties the checkout; a snapshot is taken
# on purpose, by this command:   bash scripts/snapshot.sh embedded-default
set -euo pipefail
cd "$(dirname "$0")/.."
study=${1:?usage: scripts/snapshot.sh STUDY   (a folder under results/, e.g. embedded-default)}
src="results/$study"
[ -f "$src/reports/README.md" ] || { echo "no finished report in $src/reports/ (run the study first)" >&2; exit 1; }
mkdir -p reports
dst="reports/$study"
tmp=$(mktemp -d "reports/.${study}.XXXXXX")
cp -r "$src/reports/." "$tmp/"
cp "$src/summary.csv" "$tmp/summary.csv"
rm -rf "$dst"
mv "$tmp" "$dst"
echo "snapshot of $src/reports -> $dst (+ summary.csv)"
