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


def test_adamw_decays_matrices_only_and_matches_the_per_tensor_loop():
    """The fused optimizer every trainer uses: weight decay only on matrices (unless decay_vectors),
    and the same update as torch's per-tensor AdamW."""
    import torch

    from polyspeech_cli.training import adamw

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    ref = [p.detach().clone() for p in model.parameters()]
    opt = adamw(model, 0.1, weight_decay=0.5)
    assert opt.param_groups[0]["weight_decay"] == 0.5 and opt.param_groups[1]["weight_decay"] == 0.0
    assert [p.ndim for p in opt.param_groups[0]["params"]] == [2] and opt.defaults["fused"]
    loop = torch.optim.AdamW([{"params": [p for p in ref if p.ndim >= 2], "weight_decay": 0.5},
                              {"params": [p for p in ref if p.ndim < 2], "weight_decay": 0.0}], lr=0.1, foreach=False)
    for p in ref:
        p.requires_grad_()
    for _ in range(3):
        x = torch.randn(5, 4)
        for params, o in ((list(model.parameters()), opt), (ref, loop)):
            o.zero_grad()
            y = torch.nn.functional.layer_norm(x @ params[0].T + params[1], (3,), params[2], params[3])
            y.square().sum().backward()
            o.step()
    for a, b in zip(model.parameters(), ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert len(adamw(model, 0.1, 0.5, decay_vectors=True).param_groups) == 1
