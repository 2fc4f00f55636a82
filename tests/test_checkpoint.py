"""Training checkpoints: atomic directories, keep-last-K, and a corrupt latest one skipped."""
import pytest
import torch

from oreal_mega import cli
from oreal_mega.errors import UserError
from oreal_mega.trainer import checkpointer as checkpoint


def _state(seed: float):
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return {"m": [model]}, {"m": (optimizer, scheduler)}


def test_keep_last_and_corrupt_latest_falls_back(megatron_world, tmp_path):
    for step in (1, 2, 3):
        models, optims = _state(float(step))
        checkpoint.save(tmp_path, step, models, optims, {"step": step}, keep_last=2)
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path)] == ["step_000002", "step_000003"]
    assert checkpoint.latest_valid(tmp_path).name == "step_000003"

    rank_file = tmp_path / "step_000003" / "rank_00000.pt"
    rank_file.write_bytes(rank_file.read_bytes()[:100])  # a truncated write
    (tmp_path / "step_000004.tmp").mkdir()  # an interrupted save: never considered
    with pytest.warns(UserWarning, match=r"skipping checkpoint .*step_000003: rank_00000.pt has 100 bytes"):
        latest = checkpoint.latest_valid(tmp_path)
    assert latest.name == "step_000002"

    models, optims = _state(0.0)
    extra = checkpoint.load(latest, models, optims)
    assert extra == {"step": 2}
    assert torch.allclose(models["m"][0].weight, _state(2.0)[0]["m"][0].weight)


def test_a_run_that_cannot_resume_is_one_line_on_the_command_line(megatron_world, tmp_path, capsys, monkeypatch):
    """CheckpointError is a UserError: the command line prints its message alone, no traceback, exit 2."""
    models, optims = _state(1.0)
    checkpoint.save(tmp_path / "checkpoints", 1, models, optims, {"step": 1}, keep_last=1)
    rank_file = tmp_path / "checkpoints" / "step_000001" / "rank_00000.pt"
    rank_file.write_bytes(rank_file.read_bytes()[:100])
    checkpointer = checkpoint.Checkpointer(tmp_path, models, optims, save_every=1, keep_last=1, total_steps=2)
    with pytest.warns(UserWarning, match="skipping checkpoint"), pytest.raises(UserError) as err:
        checkpointer.resume()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    with pytest.raises(SystemExit) as exit_:
        cli._report("train", err.value)
    root = tmp_path / "checkpoints"
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"oreal-mega train: error: no checkpoint in {root} can be resumed from (the "
                                       f"warnings above say why); move {root} away to start the run from step 0\n")
