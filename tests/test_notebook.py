"""examples/lesson.ipynb on a real Jupyter kernel: it runs from top to bottom, is stored without
outputs, shows fit's progress as a widget and History.plot()'s Figure as an image, and its
MNIST-1D ablation puts every trick ahead of none and writes the ablation figure."""
import os
import re
from pathlib import Path

import pytest

import fusetrain

LESSON = Path(__file__).resolve().parents[1] / "examples" / "lesson.ipynb"
PACKAGE_PARENT = Path(fusetrain.__file__).resolve().parents[1]


def test_the_lesson_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(LESSON, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_the_lesson_runs_on_a_real_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("mnist1d")
    # the kernel is a child process: it finds the fusetrain under test the way this process did
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(LESSON, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in cells for o in c.outputs)

    def text(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    # fit(verbose=1) in a kernel: tqdm.auto's widgets, one per epoch; then the returned Figure as an image
    first = next(c for c in cells if "plain = train(verbose=1)" in c.source)
    widgets = [o for o in first.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 20
    assert any(o.output_type == "execute_result" and "image/png" in o.data for o in first.outputs)
    # every comparison draws its figure
    assert sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs) >= 9

    stopping = next(c for c in cells if "early_stopping=5" in c.source)
    m = re.search(r"stopped after epoch (\d+) restored epoch (\d+)", text(stopping))
    assert m and int(m.group(1)) == int(m.group(2)) + 5
    assert f"EarlyStopping: stopped early after epoch {m.group(1)}" in text(stopping)

    ablation = next(c for c in cells if "ablation = {" in c.source)
    acc = {name.strip(): float(v) for name, v in re.findall(r"^(.+?)\s+test accuracy ([\d.]+)%$", text(ablation),
                                                             flags=re.M)}
    assert len(acc) == 7
    assert acc["every trick"] > acc["no tricks (plain SGD)"] + 20
    assert (tmp_path / "lesson_ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
