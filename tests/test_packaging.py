"""Packaging guards: the package list, the `platform` shadowing trap, the wheel, the CLI."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("platform", "catalog", "pipelines", "training")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _package_folders() -> set[str]:
    """Dotted names of the folders that are packages (roots, and folders with __init__.py)."""
    names = set()
    for root in ROOTS:
        base = REPO / root
        if not base.is_dir():
            continue
        names.add(f"spectralearth.{root}")
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts or rel == Path("."):
                continue
            names.add(".".join(("spectralearth", root, *rel.parts)))
    return names


def _clean_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_package_list_matches_folders():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = _package_folders()
    assert listed == found, (
        f"pyproject.toml [tool.setuptools] packages is out of date: missing {sorted(found - listed)}, "
        f"stale {sorted(listed - found)}"
    )


def test_package_dir_maps_every_root():
    package_dir = _pyproject()["tool"]["setuptools"]["package-dir"]
    for root in ROOTS:
        if (REPO / root).is_dir():
            assert package_dir.get(f"spectralearth.{root}") == root


def test_platform_folder_has_no_init():
    assert not (REPO / "platform" / "__init__.py").exists(), "platform/__init__.py would shadow the stdlib"


def test_import_platform_from_repo_root_is_stdlib():
    out = subprocess.run(
        [sys.executable, "-c", "import platform; print(platform.__file__); print(platform.python_version())"],
        cwd=REPO, capture_output=True, text=True, env=_clean_env(), timeout=60, check=True,
    ).stdout.splitlines()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(out[0]).resolve() == stdlib / "platform.py"
    assert out[1] == ".".join(map(str, sys.version_info[:3]))


def test_wheel_contents(tmp_path):
    """A real (non-editable) build ships every subpackage, the schemas and no top-level platform."""
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for root in ROOTS:
        if (REPO / root).is_dir():
            shutil.copytree(REPO / root, src / root, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(src)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("spectralearth-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _package_folders():
        folder = package.replace(".", "/")
        assert any(n.startswith(folder + "/") and n.endswith(".py") for n in names), f"{package} not in the wheel"
    assert not any(n.startswith("platform/") for n in names)
    assert "spectralearth/platform/__init__.py" not in names
    shipped = {n for n in names if n.startswith("spectralearth/catalog/schemas/") and n.endswith(".json")}
    on_disk = {
        "spectralearth/catalog/schemas/" + p.relative_to(REPO / "catalog" / "schemas").as_posix()
        for p in (REPO / "catalog" / "schemas").rglob("*.json")
    }
    assert on_disk and shipped == on_disk
    assert "spectralearth/catalog/enmap/data/enmap_l2a_bands.csv" in names


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "spectralearth"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "spectralearth.platform.cli"]


def _subcommands() -> list[str]:
    from spectralearth.platform.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return sorted(actions[0].choices)


def test_cli_help():
    proc = subprocess.run(_cli() + ["--help"], capture_output=True, text=True, cwd=REPO, env=_clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: spectralearth" in proc.stdout
    for name in _subcommands():
        assert name in proc.stdout


def test_every_subcommand_help_exits_zero():
    names = _subcommands()
    assert names
    procs = {
        name: subprocess.Popen(_cli() + [name, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO, env=_clean_env())
        for name in names
    }
    failures = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0 or f"usage: spectralearth {name}" not in out:
            failures[name] = (proc.returncode, err[-2000:])
    assert not failures, failures


def test_unknown_subcommand_is_a_usage_error():
    proc = subprocess.run(_cli() + ["no-such-command"], capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


@pytest.mark.parametrize("module", ["spectralearth.platform.seaweed", "spectralearth.platform.faultproxy",
                                    "spectralearth.catalog.schemas"])
def test_public_modules_declare_all(module):
    import importlib

    mod = importlib.import_module(module)
    assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)
