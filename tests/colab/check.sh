#!/usr/bin/env bash
# The course on Google Colab's stack, without Colab: a Python 3.13 venv holding Colab's
# preinstalled versions of every package the course uses (tests/colab/colab-runtime-2026-08.txt,
# a copy of Colab's public package list), then exactly what each notebook's Colab cell runs
# (`pip install --no-deps` of the course + `python -m course_utils install --here`). It checks
# that no preinstalled package was replaced, then runs the unit tests and notebooks 00-02 and their
# solution notebooks there (fast mode, offline). Needs network to PyPI for the install; skips
# without a 3.13 interpreter.
#   bash tests/colab/check.sh            (COLAB_PYTHON=/path/to/python3.13 to choose one)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CONSTRAINTS=$ROOT/tests/colab/colab-runtime-2026-08.txt

PY313=${COLAB_PYTHON:-}
if [ -z "$PY313" ]; then
  for candidate in python3.13 "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.13*/bin/python3.13; do
    # (a pyenv shim exists even where it cannot run: ask the interpreter itself)
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
      PY313=$("$candidate" -c 'import sys; print(sys.executable)'); break
    fi
  done
fi
if [ -z "$PY313" ]; then
  echo "colab check: SKIPPED (no Python 3.13 interpreter found; set COLAB_PYTHON)"
  exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "== Colab check with $("$PY313" --version) in $WORK"
"$PY313" -m venv "$WORK/venv"
PY=$WORK/venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 1. Colab's preinstalled stack: the packages the course (and its tests) use, at Colab's versions.
"$PY" -m pip install -q -c "$CONSTRAINTS" tensorflow keras numpy pandas scipy scikit-learn \
    scikit-image matplotlib pillow tqdm psutil ipywidgets shap protobuf ipykernel jupyter_client \
    nbconvert nbformat nbclient pytest pyyaml packaging 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -m pip freeze --exclude-editable > "$WORK/before.txt"

# 2. What the notebooks' Colab cell runs (the course from this checkout instead of GitHub),
#    plus the test tools Colab lacks (nbval, ruff), added the same way.
"$PY" -m pip install -q --no-deps "$ROOT" 2>&1 | grep -v "^WARNING: Location" || true
(cd "$WORK" && "$PY" -m course_utils install --here)
(cd "$WORK" && "$PY" -m course_utils install --here --test)
"$PY" -m pip freeze --exclude-editable > "$WORK/after.txt"

# 3. Nothing preinstalled was replaced or removed; list what was added.
"$PY" - "$WORK/before.txt" "$WORK/after.txt" <<'PYEOF'
import sys
def read(p):
    return dict(l.strip().split("==", 1) for l in open(p) if "==" in l)
before, after = read(sys.argv[1]), read(sys.argv[2])
changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
added = sorted(f"{k}=={v}" for k, v in after.items() if k not in before)
print("added:", ", ".join(added))
key = ["tensorflow", "keras", "numpy", "pandas", "protobuf", "ipykernel", "jupyter_client"]
print("kept:", ", ".join(f"{k}=={before[k]}" for k in key if k in before))
if changed:
    sys.exit(f"colab check: FAILED, preinstalled packages changed: {changed}")
if any(a.lower().startswith(("tensorflow-cpu==", "tensorflow==")) for a in added):
    sys.exit("colab check: FAILED, a second TensorFlow was installed")
PYEOF
"$PY" -m pip check || { echo "colab check: FAILED (pip check)"; exit 1; }

# 4. The tests on that stack: unit tests + notebooks 00-02 and then their solutions, fast mode, offline.
NOTEBOOKS=$(ls notebooks/0[0-2]_*.ipynb notebooks/solutions/0[0-2]_*_solutions.ipynb)
COURSE_DATA_DIR=$WORK/data COURSE_OFFLINE=1 COURSE_FAST=1 TF_CPP_MIN_LOG_LEVEL=3 \
CUDA_VISIBLE_DEVICES= PYTHONHASHSEED=0 KERAS_BACKEND=tensorflow PYDEVD_DISABLE_FILE_VALIDATION=1 \
    "$PY" -m pytest tests $NOTEBOOKS --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -q
echo "colab check: PASSED"
