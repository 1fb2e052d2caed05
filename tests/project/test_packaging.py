"""maskray installs as one import package, and a user's own modules cannot shadow it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (found,) = folder.glob("maskray-*.whl")
    return found


def test_the_wheel_installs_only_maskray(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"maskray", next(t for t in top_level if t.endswith(".dist-info"))}
    assert "maskray/cli.py" in names
    assert "maskray/pipeline/execution/worker.py" in names
    assert "maskray/models/weights/demo.pt" in names  # the demo model ships in the wheel
    assert not any(name.startswith(("maskray/tests/", "maskray/benchmarks/")) for name in names)
    assert not any(name.endswith((".md", ".toml")) and name.startswith("maskray/") for name in names)
    # Every module of the checkout is in the wheel: a new folder must be a package (its
    # `__init__.py`) listed in pyproject.toml's `packages`, or its modules are left out.
    modules = {path.relative_to(REPO).as_posix() for path in REPO.rglob("*.py")
               if not path.relative_to(REPO).parts[0].startswith((".", "tests", "benchmarks", "build"))}
    missing = sorted(module for module in modules if f"maskray/{module}" not in names)
    assert missing == [], f"not installed (add the folder to pyproject.toml's packages): {missing}"


def test_a_users_own_models_and_pipeline_modules_do_not_shadow_maskray(tmp_path):
    """The Python API from a folder holding its own `models.py` and `pipeline.py`."""
    from results_helpers import empty_prediction, write_output
    from maskray.pipeline.output.schema import FrameRef

    output = tmp_path / "out"
    write_output(str(output), [(FrameRef("a.png", 0, None, 8, 6), empty_prediction(6, 8))])
    user = tmp_path / "project"
    user.mkdir()
    for name in ("models", "pipeline", "jobs", "cli"):
        (user / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    script = (
        "from maskray.pipeline.output.reader import open_output\n"
        f"out = open_output({str(output)!r})\n"
        "print(out.sql('SELECT count(*) AS n FROM frames').column('n')[0].as_py())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=user, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1"


def test_the_wheel_ships_the_viewers_page(wheel):
    from maskray.pipeline.view.server import STATIC_FILES

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"maskray/pipeline/view/static/{name}" for name in STATIC_FILES} <= names
