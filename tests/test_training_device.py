"""Device selection: under torchrun every rank gets its own GPU, whether the config says auto or cuda."""

import pytest
import torch

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.training import pick_device


def test_each_torchrun_rank_gets_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device("auto") == torch.device("cuda", 1)
    assert pick_device("cuda") == torch.device("cuda", 1)
    assert pick_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept
    monkeypatch.delenv("LOCAL_RANK")
    assert pick_device("cuda") == torch.device("cuda", 0)


def test_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(PolyspeechError, match="no CUDA GPU"):
        pick_device("cuda")
