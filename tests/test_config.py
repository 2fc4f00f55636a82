"""YAML → dataclass configs: overrides, and errors that name the file, key and expected type."""
from dataclasses import dataclass, field
from typing import Literal

import json

import pytest
import yaml

from oreal_mega.errors import UserError
from oreal_mega.config import ConfigError, load_config, save_resolved
from oreal_mega.distributed import ParallelConfig, check_layout


@dataclass
class Optim:
    lr: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    schedule: Literal["cosine", "constant"] = "cosine"


@dataclass
class Job:
    model: str
    optim: Optim = field(default_factory=Optim)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    steps: int = 10
    eval_every: int | None = None


def _write(tmp_path, data):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_and_override(tmp_path):
    path = _write(tmp_path, {"model": "m", "optim": {"lr": 2}, "parallel": {"tp": 2}})
    cfg = load_config(Job, path, ["optim.lr=1e-7", "parallel.pp=2", "eval_every=5", "optim.schedule=constant"])
    assert cfg.optim.lr == 1e-7 and isinstance(cfg.optim.lr, float)
    assert (cfg.parallel.tp, cfg.parallel.pp, cfg.eval_every, cfg.optim.schedule) == (2, 2, 5, "constant")
    assert load_config(Job, path).optim.lr == 2.0
    saved = save_resolved(cfg, tmp_path / "run")
    assert yaml.safe_load(saved.read_text())["optim"] == {"lr": 1e-7, "betas": [0.9, 0.95], "schedule": "constant"}
    assert load_config(Job, saved) == cfg


@pytest.mark.parametrize("data, overrides, expected", [
    ({"model": "m", "optim": {"lrr": 1}}, [], "job.yaml: unknown key 'optim.lrr'"),
    ({"model": "m", "optim": {"lr": "fast"}}, [], "job.yaml: key 'optim.lr' expects float, got str 'fast'"),
    ({"model": "m", "steps": 1.5}, [], "key 'steps' expects int, got float 1.5"),
    ({"model": "m", "steps": True}, [], "key 'steps' expects int, got bool True"),
    ({"model": "m", "optim": {"schedule": "linear"}}, [], "key 'optim.schedule' expects 'cosine' | 'constant'"),
    ({"model": "m", "optim": {"betas": [0.9, "x"]}}, [], "key 'optim.betas[1]' expects float"),
    ({"optim": {}}, [], "job.yaml: missing required key 'model' (str)"),
    ({"model": "m"}, ["optim.lr=abc"], "job.yaml + command line: key 'optim.lr' expects float, got str 'abc'"),
    ({"model": "m"}, ["optim.momentum=0.9"], "command line: unknown key 'optim.momentum'"),
    ({"model": "m"}, ["steps"], "command line: override 'steps' is not of the form key.path=value"),
])
def test_errors_name_source_key_and_type(tmp_path, data, overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(Job, _write(tmp_path, data), overrides)
    assert expected in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(Job, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Job, bad)


def test_layout_errors():
    with pytest.raises(UserError, match="world size 3 is not divisible by parallel.tp × parallel.pp = 2 × 1"):
        check_layout(3, ParallelConfig(tp=2))
    with pytest.raises(UserError, match="parallel.vpp=2 needs parallel.pp ≥ 2"):
        check_layout(2, ParallelConfig(vpp=2))
    with pytest.raises(UserError, match="6 layers do not split evenly"):
        check_layout(4, ParallelConfig(pp=2, vpp=2), num_layers=6)
    check_layout(8, ParallelConfig(tp=2, pp=2, vpp=2), num_layers=8)


def _model_dir(tmp_path, architectures=("Qwen2ForCausalLM",)):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "architectures": list(architectures), "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4}))
    return model


def test_train_config_checks_name_the_key_and_the_file(tmp_path):
    from oreal_mega.trainer.config import DataConfig, ModelConfig, TrainConfig, TrainLoopConfig, validate

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(item) for item in [
        {"question": "1+1?", "gold_answer": "2"}, {"question": "2+2?"}, {"question": "3+3?"}]) + "\n")
    model = _model_dir(tmp_path)
    cfg = TrainConfig(model=ModelConfig(path=str(model)), data=DataConfig(prompts=str(prompts)))
    with pytest.raises(UserError) as err:
        validate(cfg, "rl.yaml")
    assert str(err.value) == (f"data.prompts in rl.yaml: {prompts}: 2 bad lines: line 2: a training prompt "
                              "needs a gold answer (gold_answer or answer); line 3: a training prompt needs a "
                              "gold answer (gold_answer or answer)")
    prompts.write_text(json.dumps({"question": "1+1?", "gold_answer": "2"}) + "\n")
    validate(cfg, "rl.yaml")

    def check(message, **changes):
        sections = {"model": cfg.model, "data": cfg.data, **changes}
        with pytest.raises(UserError) as err:
            validate(TrainConfig(**sections), "rl.yaml")
        assert str(err.value) == message

    check(f"model.path in rl.yaml: no config.json in {tmp_path}", model=ModelConfig(path=str(tmp_path)))
    check(f"model.path in rl.yaml: no directory {tmp_path / 'nope'}", model=ModelConfig(path=str(tmp_path / "nope")))
    (tmp_path / "other").mkdir()
    check(f"model.path in rl.yaml: {_model_dir(tmp_path / 'other', ['MistralForCausalLM']) / 'config.json'}: "
          "architectures=['MistralForCausalLM'] is not supported (supported: Qwen2ForCausalLM, LlamaForCausalLM)",
          model=ModelConfig(path=str(tmp_path / "other" / "model")))
    check("data.prompts in rl.yaml is not set (a JSONL file of questions with gold answers)", data=DataConfig())
    check(f"data.prompts in rl.yaml: prompt file {tmp_path / 'missing.jsonl'} does not exist",
          data=DataConfig(prompts=str(tmp_path / "missing.jsonl")))
    check("train.eval_every > 0 in rl.yaml needs train.eval_data (a JSONL of problems with answers)",
          train=TrainLoopConfig(eval_every=5))
    check("world size 1 is not divisible by parallel.tp × parallel.pp = 1 × 4", parallel=ParallelConfig(pp=4))


def test_config_errors_come_before_heavy_imports_as_one_line(tmp_path):
    """No megatron, vLLM or transformers is imported before the error; the CPU time is a generous bound
    (wall time on a shared 2-core machine says little)."""
    import resource
    import subprocess
    import sys

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    for command, extra in [("train", {}), ("sft", {"data": {"path": "d.jsonl"}})]:
        config = tmp_path / f"{command}.yaml"
        config.write_text(yaml.safe_dump({"model": {"path": str(tmp_path)}, **extra}))
        began = cpu_seconds()
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "oreal_mega", command, str(config)],
                             capture_output=True, text=True)
        seconds = cpu_seconds() - began
        imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in out.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "oreal_mega" in imported and not imported & {"megatron", "vllm", "transformers"}
        message = [line for line in out.stderr.splitlines() if not line.startswith("import time:")]
        assert out.returncode == 2 and seconds < 5, seconds
        assert message == [f"oreal-mega {command}: error: model.path in {config}: no config.json in {tmp_path}"]


def test_a_removed_key_is_refused_with_what_to_do_instead(tmp_path):
    from oreal_mega.trainer.config import TrainConfig

    path = _write(tmp_path, {"model": {"path": "m"}, "objective": {"ppo_clip": True}})
    with pytest.raises(ConfigError, match=r"job.yaml: key 'objective.ppo_clip' was removed: the trainer makes one"):
        load_config(TrainConfig, path)
    path = _write(tmp_path, {"model": {"path": "m"}})
    with pytest.raises(ConfigError, match=r"command line: key 'train.inject_nan_at_steps' was removed: fault "
                                          r"injection moved out of the trainer"):
        load_config(TrainConfig, path, ["train.inject_nan_at_steps=[1]"])



@pytest.mark.parametrize("command, data, override, expected", [
    ("train", {}, "model.dtype=bf16", "job.yaml + command line: key 'model.dtype' expects 'bfloat16' | 'float32', "
                                     "got str 'bf16'"),
    ("train", {"dtype": "float16"}, None, "job.yaml: key 'model.dtype' expects 'bfloat16' | 'float32', "
                                          "got str 'float16'"),
    ("sft", {"offload_reference": True}, None, "job.yaml: unknown key 'model.offload_reference' (SFTModelConfig has: "
                                               "path, dtype, recompute)"),
    ("sft", {}, "model.offload_token_rm=true", "command line: unknown key 'model.offload_token_rm' (SFTModelConfig "
                                              "has: dtype, path, recompute)"),
])
def test_model_keys_that_would_be_wrong_or_ignored_are_refused(tmp_path, command, data, override, expected):
    """A dtype typo, float16 (no loss scaling) and SFT's offload keys (SFT has no reference or token-RM)."""
    from oreal_mega.trainer.config import SFTConfig, TrainConfig

    cls, extra = (TrainConfig, {}) if command == "train" else (SFTConfig, {"data": {"path": "d.jsonl"}})
    path = _write(tmp_path, {"model": {"path": "m", **data}, **extra})
    with pytest.raises(ConfigError) as err:
        load_config(cls, path, [override] if override else [])
    assert str(err.value) == expected.replace("job.yaml", str(path))
