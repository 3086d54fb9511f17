#!/usr/bin/env bash
# The pull-request report, as CI posts it and as anyone can make it locally:
#
#   bash ci/pr_report.sh [BASE] [REPORT.md] [PLOTS_DIR]
#
# BASE (default: main) is the git revision to compare with; run after `dvc repro`. Writes the
# Markdown report (params and metrics diffs against BASE as tables, and the plots section) and
# renders the plots of both revisions to PLOTS_DIR (DVC's HTML page, plus one PNG per plot
# when vl-convert-python is installed). Set REPORT_PLOTS_URL to link the plots (CI links the
# workflow run's artifacts).
set -euo pipefail

base="${1:-main}"
report="${2:-pr_report.md}"
plots="${3:-pr_plots}"

dvc plots diff "$base" --out "$plots" >/dev/null 2>&1 || echo "warning: dvc plots diff failed" >&2
dvc plots diff "$base" --json > "$plots/plots.json" 2>/dev/null || true
python - "$plots" <<'PY' || true
import json, pathlib, sys
try:
    import vl_convert
except ImportError:
    sys.exit(0)
out = pathlib.Path(sys.argv[1])
shown = json.loads((out / "plots.json").read_text())
for name, plots in shown.get("data", {}).items() if isinstance(shown.get("data"), dict) else []:
    for i, plot in enumerate(plots):
        spec = plot.get("content")
        if isinstance(spec, dict) and "$schema" in spec:
            png = out / (name.replace("/", "_").replace(".", "_") + f"_{i}.png")
            png.write_bytes(vl_convert.vegalite_to_png(spec))
PY

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
  images=$(find "$plots" -maxdepth 1 -name '*.png' -printf '%f\n' 2>/dev/null | sort || true)
  if [ -n "$images" ]; then
    echo
    echo "$images" | sed 's/^/- /'
  fi
} > "$report"
echo "report written to $report (plots in $plots)" >&2
