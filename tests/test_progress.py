"""What fit shows while it trains, seen where users see it: a real pseudo-terminal of 80 and 120
columns (the screen rebuilt from the bytes written, as a terminal draws them), a pipe, and the
verbose levels; the numbers shown are checked against the run's History."""
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

import fusetrain

TESTS = Path(__file__).resolve().parent
PACKAGE_PARENT = Path(fusetrain.__file__).resolve().parents[1]  # the fusetrain under test, installed or not
_SCRIPT = r"""
import json, sys
import fusetrain
from fusetrain import optim
from fusetrain.models import MLP
from testutils import classification_problem
x, y = classification_problem(600, d=20, k=4)
fusetrain.manual_seed(0)
model = MLP(20, (32,), 4, batchnorm=True)
t = fusetrain.Trainer(model, optim.AdamW(model.parameters(), lr=3e-3))
h = t.fit(x, y, epochs=3, batch_size=16, validation_data=(x[:100], y[:100]), verbose=int(sys.argv[1]))
print(json.dumps(h.history), file=open(sys.argv[2], "w"))
"""


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(PACKAGE_PARENT),
                                                       os.environ.get("PYTHONPATH", "")]))
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


def _in_terminal(tmp_path, columns, verbose):
    """Run the script with stdout and stderr on a pseudo-terminal of ``columns`` columns; returns
    (everything written to the terminal, the History)."""
    script = tmp_path / "fit.py"
    script.write_text(_SCRIPT)
    raw = _run_in_terminal([sys.executable, str(script), str(verbose), str(tmp_path / "h.json")], tmp_path, columns)
    return raw, json.loads((tmp_path / "h.json").read_text())


def _run_in_terminal(cmd, cwd, columns):
    """Everything ``cmd`` writes to a pseudo-terminal of ``columns`` columns (stdout and stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=_env(), cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closes when the process and its output are gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode()


def _screen(raw, columns):
    """The lines a terminal of ``columns`` columns shows for ``raw`` (carriage returns overwrite,
    line feeds move down; the pty turns \\n into \\r\\n). Also how many times a line ran past the
    right edge (where a terminal would wrap it)."""
    raw = re.sub(r"\x1b\[[0-9;]*K", "", raw)  # erase-to-end-of-line: our renderer has no leftovers
    assert "\x1b" not in raw, f"unexpected escape sequence in {raw!r}"
    rows, row, col, overflows = [[]], 0, 0, 0
    for ch in raw:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            if row == len(rows):
                rows.append([])
        else:
            if col == columns:
                overflows += 1
                row, col = row + 1, 0
                if row == len(rows):
                    rows.append([])
            line = rows[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = ch
            col += 1
    return ["".join(r).rstrip() for r in rows if "".join(r).strip()], overflows


def _summary_fields(history, epoch, epochs=3):
    values = {k: v[epoch] for k, v in history.items()}
    return ([f"Epoch {epoch + 1}/{epochs}", "38/38"] +
            [f"{k} {v:.4f}" if k != "lr" else f"lr {v:.3g}" for k, v in values.items()])


@pytest.mark.parametrize("columns", [80, 120])
def test_terminal_shows_a_bar_then_one_clean_summary_per_epoch_within_the_width(tmp_path, columns):
    raw, history = _in_terminal(tmp_path, columns, verbose=1)
    assert "\r" in raw.replace("\r\n", "") and "|" in raw  # a bar was drawn and redrawn in place
    lines, overflows = _screen(raw, columns)
    assert overflows == 0, lines
    assert all(len(line) <= columns - 1 for line in lines)
    # what stays on the screen: each epoch's summary, continuation lines indented, nothing else
    epochs = [i for i, line in enumerate(lines) if line.startswith("Epoch ")]
    assert len(epochs) == 3 and epochs[0] == 0
    for e, start in enumerate(epochs):
        end = epochs[e + 1] if e + 1 < len(epochs) else len(lines)
        assert all(line.startswith("    ") for line in lines[start + 1:end])
        text = "  ".join(line.strip() for line in lines[start:end])
        assert re.search(r"\d+\.\d+s  [\d,]+ samples/s  ", text)
        fields = _summary_fields(history, e)
        assert all(f in text for f in fields), (fields, text)
        assert (end - start == 1) == (columns == 120)  # 120 columns hold a summary, 80 need two lines


def test_verbose_2_prints_only_the_summaries_even_on_a_terminal(tmp_path):
    raw, history = _in_terminal(tmp_path, 200, verbose=2)
    assert "|" not in raw and "\r" not in raw.replace("\r\n", "")
    lines = raw.replace("\r\n", "\n").splitlines()
    assert len(lines) == 3
    assert all(f in lines[2] for f in _summary_fields(history, 2))


def test_a_pipe_gets_one_plain_line_per_epoch(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), "1", str(tmp_path / "h.json")], capture_output=True,
                          text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    history = json.loads((tmp_path / "h.json").read_text())
    assert proc.stdout == "" and "\r" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3
    for e, line in enumerate(lines):
        assert line.split("  ")[:2] == [f"Epoch {e + 1}/3", "38/38"] and "samples/s" in line
        assert all(f in line for f in _summary_fields(history, e))


def test_the_cli_in_an_80_column_terminal_breaks_its_lines_between_words(tmp_path):
    raw = _run_in_terminal([sys.executable, "-m", "fusetrain", "train", "--early-stopping", "0", "--out", "run"],
                           tmp_path, 80)
    lines, overflows = _screen(raw, 80)
    assert overflows == 0, lines  # the terminal never had to wrap a line itself
    text = " ".join(line.strip() for line in lines)
    assert re.search(r"EarlyStopping: stopped early after epoch \d+: val_loss had not improved for 1 epoch; "
                     r"restored the weights of epoch \d+", text), text
    assert re.search(r"test accuracy \d+\.\d\d% \(loss \d\.\d{4}\) after \d+ epochs, stopped early", text), text
    assert "wrote run/: history.csv, curves.png, checkpoint.npz, model.npz" in text
