"""Loading the code location stays light: no torch, no heavy science library at import.

Every Dagster run, step, sensor tick and webserver reload imports ``lensing_assets`` and calls
``defs()``; the heavy libraries are imported by the functions that use them, when they run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.shell import REPO, user_environment

#: Libraries that loading the code location must not import (numpy is fine).
HEAVY = (
    "torch",
    "torchvision",
    "lightning",
    "timm",
    "healpy",
    "ducc0",
    "pyccl",
    "glass",
    "camb",
    "matplotlib",
    "datasets",
    "pyarrow",
    "pandas",
    "scipy",
    "astropy",
    "dask",
    "distributed",
    "dask_jobqueue",
    "sklearn",
    "numba",
)

# Loads the code location as Dagster does (import, then defs()) and prints, as JSON, the heavy
# packages then in sys.modules, the seconds taken, and for each package the project's frames
# (file:line, outermost first) of the first import that asked for it.
_PROBE = """
import json, sys, time, traceback

heavy, repo, extra = set(sys.argv[1].split(",")), sys.argv[2] + "/", sys.argv[3]
first_asked = {}

class _Recorder:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in heavy and top not in first_asked:
            first_asked[top] = [
                f"{f.filename.removeprefix(repo)}:{f.lineno}"
                for f in traceback.extract_stack()[:-1]
                if f.filename.startswith(repo) and "/.venv/" not in f.filename
            ]
        return None  # only watches: the import goes on as usual

sys.meta_path.insert(0, _Recorder())
start = time.perf_counter()
import lensing_assets.definitions
imported = time.perf_counter()
lensing_assets.definitions.defs()
loaded = time.perf_counter()
exec(extra)
found = sorted(m for m in heavy if m in sys.modules)
print(json.dumps({
    "heavy": found,
    "import_s": imported - start,
    "defs_s": loaded - imported,
    "chains": {m: first_asked.get(m, []) for m in found},
}))
"""


def _load_code_location(tmp_path: Path, extra: str = "") -> dict[str, Any]:
    """Run :data:`_PROBE` in a fresh interpreter on a tiny synthetic suite; its report."""
    env = user_environment(tmp_path, LENSING_SUITE="1-3,109", LENSING_NSIDE="128")
    for folder in ("DAGSTER_HOME", "LENSING_DATA_ROOT"):
        Path(env[folder]).mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(HEAVY), str(REPO), extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def _describe(report: dict[str, Any]) -> str:
    chains = "\n".join(
        f"  {module}: {' -> '.join(frames) or '(not through the project)'}"
        for module, frames in report["chains"].items()
    )
    return (
        f"loading the code location imported {report['heavy']} "
        f"(import {report['import_s']:.2f} s, defs() {report['defs_s']:.2f} s); "
        f"first asked for by:\n{chains}"
    )


def test_loading_the_code_location_imports_no_heavy_library(tmp_path: Path) -> None:
    """``import lensing_assets.definitions`` and ``defs()`` leave every heavy library unloaded."""
    report = _load_code_location(tmp_path)
    assert report["heavy"] == [], _describe(report)


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The same probe reports a heavy library that is imported, and the project line that did."""
    report = _load_code_location(
        tmp_path, extra="from lensing_core.sims.theory import des_y3_like_nz; des_y3_like_nz()"
    )
    assert "scipy" in report["heavy"], _describe(report)
    assert report["chains"]["scipy"][-1].startswith("lensing_core/sims/theory.py:")
