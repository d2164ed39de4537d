import pytest
import torch

from sirenrope.threads import _openblas, blas_threads, set_threads


def test_set_threads_sets_torch_and_openblas():
    before_torch, before_blas = torch.get_num_threads(), blas_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        if before_blas is not None:  # Debian's torch: OpenBLAS, whose pool is its own
            assert blas_threads() == 1
    finally:
        torch.set_num_threads(before_torch)
        if before_blas is not None:
            _openblas().openblas_set_num_threads(before_blas)


def test_the_projects_torch_uses_openblas():
    # The reason set_threads exists: if this fails, torch's BLAS changed and the note in
    # sirenrope/threads.py (and docs/results.md's run time) should be reread.
    assert blas_threads() is not None


def test_set_threads_refuses_zero():
    with pytest.raises(ValueError, match="threads: expected 1 or more, got 0"):
        set_threads(0)
