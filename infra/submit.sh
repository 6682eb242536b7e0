#!/usr/bin/env bash
# Submit one of the Spark jobs (jobs/<job>.py) to a Spark cluster.
#
#   infra/submit.sh [JOB] [job flags]
#   infra/submit.sh --config infra/curate.json [more curate flags, e.g. --t-en 20000]   # JOB defaults to curate
#   infra/submit.sh curate --config infra/curate.json
#   infra/submit.sh download --input s3://bucket/run/curated --output s3://bucket/run/images
#   infra/submit.sh build_metadata --config infra/metadata.json --output s3://bucket/metadata/v3
#
# JOB is one of: curate, download, build_metadata; a first argument starting with "-" is a flag
# of the curate job (infra/cron-curate.sh and README.md submit that way).
#
# Environment:
#   MASTER          Spark master (default: yarn); DEPLOY_MODE (default: client, so the driver
#                   writes the output directory and report where you run this)
#   SPARK_SUBMIT    spark-submit to use (default: the one on PATH, else the venv's pyspark)
#   SPARK_PROPERTIES  properties file (default: infra/spark-defaults.conf)
#   VENV_ARCHIVE    optional venv-pack tarball with the project's dependencies; shipped with
#                   --archives and used as the executors' python. Without it, every node needs
#                   PYSPARK_PYTHON pointing at a python with the dependencies installed.
#   DRY_RUN=1       print the spark-submit command (stdout line 1) and the zip's files (the
#                   lines after) instead of running it; the zip is kept, so the printed command
#                   runs as is, and its path is said on stderr
# The project code (curation/, metadata/, jobs/) is shipped as a zip with --py-files; the zip
# is removed when spark-submit returns.
set -euo pipefail

JOBS="curate download build_metadata"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

job=curate
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  job=$1
  shift
  case " $JOBS " in
    *" $job "*) ;;
    *) echo "submit.sh: unknown job '$job' (one of: $JOBS; flags alone submit curate)" >&2; exit 2 ;;
  esac
fi

MASTER=${MASTER:-yarn}
DEPLOY_MODE=${DEPLOY_MODE:-client}
SPARK_PROPERTIES=${SPARK_PROPERTIES:-$here/spark-defaults.conf}
PY=${PYTHON:-$root/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
if [ -z "${SPARK_SUBMIT:-}" ]; then
  if command -v spark-submit >/dev/null 2>&1; then
    SPARK_SUBMIT=spark-submit
  else
    SPARK_SUBMIT="$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))')"
  fi
fi

build=$(mktemp -d "${TMPDIR:-/tmp}/worldclip-submit.XXXXXX")
if [ "${DRY_RUN:-0}" != 1 ]; then
  trap 'rm -rf "$build"' EXIT
fi
zip="$build/worldclip.zip"
"$PY" - "$root" "$zip" <<'PYEOF'
import os, sys, zipfile
root, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for pkg in ("curation", "metadata", "jobs"):
        for d, dirs, files in os.walk(os.path.join(root, pkg)):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in sorted(files):
                if f.endswith(".py"):
                    p = os.path.join(d, f)
                    z.write(p, os.path.relpath(p, root))
PYEOF

cmd=("$SPARK_SUBMIT" --master "$MASTER" --deploy-mode "$DEPLOY_MODE" --name "worldclip-$job"
     --properties-file "$SPARK_PROPERTIES" --py-files "$zip")
if [ -n "${VENV_ARCHIVE:-}" ]; then
  cmd+=(--archives "$VENV_ARCHIVE#venv" --conf spark.pyspark.python=./venv/bin/python)
fi
cmd+=("$root/jobs/$job.py" "$@")

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
  "$PY" -c 'import sys, zipfile; print("\n".join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))' "$zip"
  echo "submit.sh: DRY_RUN: the --py-files zip is kept at $zip (remove $build when done)" >&2
  exit 0
fi
"${cmd[@]}"
