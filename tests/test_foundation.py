"""The package's promises: cheap import, layer contracts, CLI, manifest seen by napari."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "napari_acs"


def _run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return result.stdout.strip()


def test_import_does_not_import_torch_or_napari() -> None:
    """At run time (import-linter sees only import statements): the package, its I/O and the
    module napari imports to read, write and open sample files."""
    out = _run_python(
        "import sys, napari_acs, napari_acs.io; "
        "print(sorted(m for m in ('torch', 'napari', 'qtpy', 'PyQt6') if m in sys.modules)); "
        "import napari_acs._napari._io; print('torch' in sys.modules)"
    )
    assert out.splitlines() == ["[]", "False"]


def test_segment_and_training_paths_do_not_import_monai() -> None:
    """MONAI takes seconds to import; the command line's segment path loads it only for
    cases that need several windows, training (loss, AUC) never."""
    out = _run_python(
        "import sys, napari_acs.cli, napari_acs.inference.batch, napari_acs.models.select; "
        "napari_acs.cli.build_parser(); segment = 'monai' in sys.modules; "
        "import napari_acs.training.loop, napari_acs.training.comparison; print(segment, 'monai' in sys.modules)"
    )
    assert out == "False False"


def test_manifest_load_does_not_import_torch() -> None:
    out = _run_python(
        "import sys; from npe2 import PluginManifest; "
        "pm = PluginManifest.from_distribution('napari-acs'); "
        "print(pm.name, 'torch' in sys.modules)"
    )
    assert out == "napari-acs False"


def test_layer_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml ([tool.importlinter]): the layers (io <- models
    <- inference <- training <- _napari / cli, no cycles, every module in a layer), no Qt or
    napari below _napari, no torch in napari_acs or napari_acs.io. Every import statement
    counts, lazy ones inside functions included."""
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe), "--no-cache", "--no-logo"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout, result.stdout


def test_cli_help_lists_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "napari_acs", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    from napari_acs.cli import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "demo" in subcommands
    for name in subcommands:
        assert name in result.stdout


def test_console_script_installed() -> None:
    exe = Path(sys.executable).with_name("napari-acs")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: napari-acs" in result.stdout


def test_npe2_validate_passes() -> None:
    exe = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(exe), "validate", "napari-acs"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout.lower()


def test_napari_sees_the_plugin_contributions() -> None:
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-acs")
    contributions = manifest.contributions
    declared = {c.id for c in contributions.commands or []}
    used = (
        {r.command for r in contributions.readers or []}
        | {w.command for w in contributions.writers or []}
        | {s.command for s in contributions.sample_data or []}
        | {w.command for w in contributions.widgets or []}
    )
    assert used and used <= declared
    assert "napari-acs" in {r.plugin_name for r in pm.iter_compatible_readers(["x_t1.nii.gz"])}
    assert any(s[0] == "napari-acs" for s in pm.iter_sample_data())


def test_wheel_contains_manifest_and_sample_data(tmp_path: Path) -> None:
    """An installed wheel, not only the editable install, carries the manifest. Built from a
    copy of the sources: setuptools writes build/ and *.egg-info/ next to them, and a stale
    build/lib in the repository would put deleted modules into later wheels."""
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / PACKAGE.name, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "napari.yaml"):
        shutil.copy2(ROOT / name, source / name)
    (source / "sample_data").symlink_to(ROOT / "sample_data")  # 40 MB, read only
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("napari_acs-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        manifest = zf.read("napari_acs/napari.yaml").decode()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "napari_acs:napari.yaml" in zf.read(entry_points).decode()
    assert "name: napari-acs" in manifest
    assert manifest == (ROOT / "napari.yaml").read_text()
    from napari_acs.io.sample import SAMPLE_CASE_ID

    assert f"napari_acs/sample_data/{SAMPLE_CASE_ID}/{SAMPLE_CASE_ID}_flair.nii.gz" in names
