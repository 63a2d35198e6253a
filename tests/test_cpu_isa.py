"""The kernels of every instruction set. A process runs the widest set its CPU supports;
FUSETRAIN_CPU_ISA selects a narrower one in a fresh process, where the tests of the direct
convolution, the GEMM (other tile shapes, other code) and the Philox dropout masks (bitwise
against the NumPy reference) run again."""
import os
import subprocess
import sys

import pytest

from fusetrain import _core

ORDER = ["portable", "avx2", "avx512"]


@pytest.mark.parametrize("isa", ["avx2", "portable"])
def test_kernels_of_narrower_instruction_sets(isa):
    if ORDER.index(_core.conv2d_direct_isa()) < ORDER.index(isa):
        pytest.skip(f"this CPU does not support {isa}")
    here = os.path.dirname(os.path.abspath(__file__))
    code = ("import sys; sys.path.insert(0, %r); import pytest; from fusetrain import _core; "
            "assert _core.conv2d_direct_isa() == %r, _core.conv2d_direct_isa(); "
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-x', '-k', 'float64 or torch or bitwise'] + %r))"
            % (here, isa, [os.path.join(here, f) for f in
                           ("test_conv.py", "test_gemm.py", "test_dropout.py", "test_batchnorm.py")]))
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FUSETRAIN_CPU_ISA=isa),
                         capture_output=True, text=True, cwd=here)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert " passed" in res.stdout and "failed" not in res.stdout


@pytest.mark.parametrize("value", ["bogus", "AVX2", "avx2 "])
def test_an_unknown_instruction_set_fails_the_import(value):
    res = subprocess.run([sys.executable, "-c", "import fusetrain"], env=dict(os.environ, FUSETRAIN_CPU_ISA=value),
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert f"FUSETRAIN_CPU_ISA must be one of avx512, avx2, portable (or unset for the widest this CPU supports), " \
           f"got '{value}'" in res.stderr, res.stderr[-2000:]


def test_an_instruction_set_this_cpu_lacks_fails_the_import():
    widest = _core.conv2d_direct_isa()
    if widest == "avx512":
        pytest.skip("this CPU supports every instruction set the kernels have")
    wanted = ORDER[ORDER.index(widest) + 1]
    res = subprocess.run([sys.executable, "-c", "import fusetrain"], env=dict(os.environ, FUSETRAIN_CPU_ISA=wanted),
                         capture_output=True, text=True)
    assert res.returncode != 0 and "this CPU does not support" in res.stderr, res.stderr[-2000:]


def test_an_empty_value_picks_the_widest_set():
    res = subprocess.run([sys.executable, "-c", "from fusetrain import _core; print(_core.conv2d_direct_isa())"],
                         env=dict(os.environ, FUSETRAIN_CPU_ISA=""), capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == _core.conv2d_direct_isa(), res.stderr[-2000:]
