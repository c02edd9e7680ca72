"""The design card's commands on a fresh instance, typed as the README's user types them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lensing_core.storage import DataRoot
from tests.fixtures.shell import shell, user_environment

KAPPA_109 = "dagster asset materialize --select kappa_maps --partition 109"
TILES_109 = "dagster asset materialize --select tiles --partition '109|200'"
UNKNOWN = (
    "sim 5000 is not a sim of the synthetic source (822 sims, 1..20016): set LENSING_SUITE to a "
    "suite of the synthetic source that includes 5000, then run: "
    "python -m lensing_assets.register 5000"
)


def _output(result: object) -> str:
    return result.stdout + result.stderr  # type: ignore[attr-defined]


@pytest.mark.slow
def test_both_commands_work_on_a_fresh_instance(tmp_path: Path) -> None:
    """A new DAGSTER_HOME, nothing registered: the keys are accepted and the runs succeed."""
    env = user_environment(tmp_path, LENSING_NSIDE="128")
    assert not Path(env["DAGSTER_HOME"]).exists()

    early = shell(TILES_109, env)
    assert early.returncode != 0
    assert "DagsterInvalidSubsetError" not in _output(early)
    assert "kappa maps of sim 109 are missing" in _output(early)
    assert KAPPA_109 in _output(early)

    kappa = shell(KAPPA_109, env)
    assert kappa.returncode == 0, _output(kappa)[-3000:]
    tiles = shell(TILES_109, env)
    assert tiles.returncode == 0, _output(tiles)[-3000:]
    root = DataRoot(Path(env["LENSING_DATA_ROOT"]))
    assert root.kappa_path(109).is_file()
    assert root.tiles_path(109, 200).is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        "dagster asset materialize --select kappa_maps --partition 5000",
        "dagster asset materialize --select tiles --partition '5000|200'",
    ],
)
def test_a_sim_the_source_lacks_fails_with_one_line(tmp_path: Path, command: str) -> None:
    """The sim, the source and what adds it, on one line, instead of Dagster's subset error."""
    env = user_environment(tmp_path, LENSING_NSIDE="128")
    result = shell(command, env)
    assert result.returncode == 1
    assert f"Error: {UNKNOWN}\n" in result.stderr
    assert "Traceback" not in _output(result)
    assert not (Path(env["LENSING_DATA_ROOT"]) / "kappa").exists()


def test_register_refuses_a_sim_the_source_lacks(tmp_path: Path) -> None:
    env = user_environment(tmp_path, LENSING_NSIDE="128")
    result = shell("python -m lensing_assets.register 5000", env)
    assert result.returncode == 2
    assert UNKNOWN in result.stderr


def test_definitions_load_when_the_instance_cannot_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Registering the suite is a convenience: a broken DAGSTER_HOME does not stop the code."""
    import lensing_assets

    not_a_directory = tmp_path / "home"
    not_a_directory.write_text("a file where the instance should be")
    for name in [n for n in os.environ if n.startswith("LENSING_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LENSING_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(not_a_directory))
    definitions = lensing_assets.defs()
    assert definitions.get_assets_def("tiles").key.to_user_string() == "tiles"
    assert "could not register the synthetic source's sims" in caplog.text
