#!/usr/bin/env bash
# The pull-request report, as CI posts it and as anyone can make it locally:
#
#   bash ci/pr_report.sh [BASE] [REPORT.md] [PLOTS_DIR]
#
# BASE (default: main) is the git revision to compare with; run after `dvc repro`. Writes the
# Markdown report (params and metrics diffs against BASE as tables, and the plots section) and
# renders the plots of both revisions to PLOTS_DIR: DVC's HTML page with the Vega libraries
# inlined (it renders offline) and one PNG per plot in PLOTS_DIR/plots, rendered by the
# vl-convert-python pinned in requirements.txt (`python -m mlpipeline plots`). Set
# REPORT_PLOTS_URL to link the plots (CI links the workflow run's artifacts).
set -euo pipefail

base="${1:-main}"
report="${2:-pr_report.md}"
plots="${3:-pr_plots}"

# DVC's page that renders offline, and one PNG per plot (pinned vl-convert): mlpipeline plots
python -m mlpipeline plots --rev "$base" --out "$plots" \
  || echo "warning: python -m mlpipeline plots --rev $base failed" >&2

{
  echo "<!-- pipeline-report -->"
  echo "## Pipeline report: this branch vs \`$base\`"
  echo
  echo "### Params"
  echo
  params="$(dvc params diff "$base" --md)"
  echo "${params:-No params changed.}"
  echo
  echo "### Metrics"
  echo
  metrics="$(dvc metrics diff "$base" --md --precision 4)"
  echo "${metrics:-No metrics changed.}"
  echo
  echo "### Plots"
  echo
  if [ -n "${REPORT_PLOTS_URL:-}" ]; then
    echo "Rendered plots of both revisions: [workflow artifacts]($REPORT_PLOTS_URL)."
  else
    echo "Rendered plots of both revisions: \`$plots/index.html\`."
  fi
  images=$(find "$plots/plots" -maxdepth 1 -name '*.png' -printf 'plots/%f\n' 2>/dev/null | sort || true)
  if [ -n "$images" ]; then
    echo
    echo "$images" | sed 's/^/- /'
  fi
} > "$report"
echo "report written to $report (plots in $plots)" >&2
