"""`pip install .` gives a working library and `phyprompt` command, from any folder, without the repository.

The wheel is built from a copy of what it is made of (so the build leaves nothing in the checkout), installed
into a fresh virtual environment, and run from outside the repository. The environment sees the test
environment's packages (torch, transformers, ...) through a `.pth` file, so nothing is downloaded.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

# what the wheel is built from: the project metadata and the library
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "phyprompt")


def run(command, cwd, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(dist), str(source)], cwd=source)
    [built] = dist.glob("phyprompt-*.whl")
    return str(built)


def test_the_wheel_holds_every_subpackage_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("phyprompt/cli.py", "phyprompt/video/cogvideox.py", "phyprompt/commands/generate.py",
                   "phyprompt/refiners/local.py"):
        assert module in names
    adapter = "phyprompt/builtin/smollm2-135m-phyprompt/"  # the built-in refiner's adapter and model card
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
        assert adapter + name in names
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"phyprompt"}  # no nodes, train or tests


def test_the_installed_command_runs_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", wheel],
        cwd=tmp_path)
    site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path)
    # addsitedir also runs the test environment's own .pth files (its torchvision shim)
    dependencies = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (Path(site_packages.stdout.strip()) / "test-dependencies.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in dependencies), encoding="utf-8")

    where = run([python, "-c", "import phyprompt.cli, phyprompt.video.cogvideox; print(phyprompt.__file__)"],
                cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)) and not where.startswith(str(REPO))

    command = str(venv / "bin" / "phyprompt")
    assert "{refine,generate,judge,eval,convert}" in run([command, "--help"], cwd=tmp_path).stdout
    assert "cogvideox" in run([command, "refine", "--help"], cwd=tmp_path).stdout
    assert "--compare" in run([command, "generate", "--help"], cwd=tmp_path).stdout
    assert "--judge" in run([command, "judge", "--help"], cwd=tmp_path).stdout
