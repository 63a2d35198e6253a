"""Every code block of README.md runs as written: in order, each in a fresh process, all in one
scratch folder (a block may use the files an earlier block wrote, never its variables), with the
fusetrain under test. The Quick start's install and test commands are the exception: .ci/run runs
those (an install here would rebuild the package under test, the test command would run itself)."""
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import fusetrain

README = Path(__file__).resolve().parents[1] / "README.md"
PACKAGE_PARENT = Path(fusetrain.__file__).resolve().parents[1]
RUN_BY_CI = ("pip install ", "python -m pytest")


def readme_blocks():
    """(language, code) of each fenced block of README.md, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def _runnable():
    out = []
    for lang, code in readme_blocks():
        if lang == "bash":
            code = "\n".join(line for line in code.splitlines() if not line.startswith(RUN_BY_CI))
        if lang in ("bash", "python") and code.strip():
            out.append((lang, code))
    return out


BLOCKS = _runnable()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The folder every block runs in, and the environment: fusetrain importable, and a
    ``fusetrain`` command on PATH (the installed entry point, or ``python -m fusetrain``)."""
    folder = tmp_path_factory.mktemp("readme")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))
    env.pop("COLUMNS", None)
    if shutil.which("fusetrain") is None:
        bin_dir = tmp_path_factory.mktemp("bin")
        shim = bin_dir / "fusetrain"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fusetrain "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return folder, env


def test_the_readme_has_the_blocks_this_test_runs():
    langs = [lang for lang, _ in readme_blocks()]
    assert langs.count("python") == 6 and langs.count("bash") == 4
    assert {lang for lang in langs} <= {"python", "bash", "text"}  # nothing left unrun by accident
    quick = readme_blocks()[0][1].splitlines()
    assert [line.split("#")[0].strip() for line in quick] == \
        ['pip install ".[data,plot,test]"', "fusetrain train", "python -m pytest tests"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(BLOCKS)])
def test_readme_block_runs_as_written(scratch, index):
    folder, env = scratch
    lang, code = BLOCKS[index]
    cmd = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"block {index} ({lang}) failed:\n{code}\n--- stdout\n{proc.stdout}\n" \
                                 f"--- stderr\n{proc.stderr}"
    for acc in re.findall(r"'accuracy': (0\.\d+)", proc.stdout):
        assert float(acc) >= 0.95, proc.stdout  # what the README's comments promise, give or take
    for acc in re.findall(r"test accuracy (\d+\.\d\d)%", proc.stdout):
        assert float(acc) >= 80.0, proc.stdout  # every CLI example learns (5 IDX epochs included)
