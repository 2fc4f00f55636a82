"""`oreal-mega convert` both ways, its errors, and the atomic destination."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from oreal_mega.cli import main
from oreal_mega.testing.tiny import make_tiny_model_dir
from oreal_mega.weights.atomic import atomic_directory


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("hf") / "qwen2", arch="qwen2", seed=5)


def _convert(*args) -> subprocess.CompletedProcess:
    # a one-process world started in this pytest process leaves its MASTER_PORT in the environment
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, "-m", "oreal_mega", "convert", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_hf_to_mcore_at_tp2_to_hf_is_bit_exact(megatron_world, hf_model, tmp_path, capsys):
    _convert("--to", "mcore", "--tp", 2, hf_model, tmp_path / "mcore")  # re-launched under torchrun
    assert json.loads((tmp_path / "mcore" / "oreal_model.json").read_text())["saved_with"]["tp"] == 2
    with pytest.raises(SystemExit) as exit_:  # in this process, in its one-process world
        main(["convert", "--to", "hf", str(tmp_path / "mcore"), str(tmp_path / "hf")])
    assert exit_.value.code == 0
    source, exported = load_file(hf_model / "model.safetensors"), {}
    for file in (tmp_path / "hf").glob("*.safetensors"):
        exported.update(load_file(file))
    assert sorted(exported) == sorted(source)
    assert all(torch.equal(exported[name], tensor) for name, tensor in source.items())
    for file in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (tmp_path / "hf" / file).read_bytes() == (hf_model / file).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "mcore"]  # no temporary left over

    # an existing destination is refused before any work
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--to", "hf", str(tmp_path / "mcore"), str(tmp_path / "hf")])
    assert exit_.value.code == 2
    assert f"{tmp_path / 'hf'} already exists (pass --overwrite to replace it)" in capsys.readouterr().err


@pytest.mark.parametrize("to, message", [
    ("mcore", "architectures=['MistralForCausalLM'] is not supported"),
    ("hf", "is not an oreal-mega model checkpoint (no oreal_model.json)"),
])
def test_bad_source_is_a_user_error(hf_model, tmp_path, capsys, to, message):
    source = tmp_path / "src"
    source.mkdir()
    config = json.loads((hf_model / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "architectures": ["MistralForCausalLM"]}))
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--to", to, str(source), str(tmp_path / "dst")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "dst").exists()


def test_truncated_or_missing_shard_is_named(megatron_world, hf_model, tmp_path, capsys):
    _convert("--to", "mcore", hf_model, tmp_path / "mcore")
    shard = max((tmp_path / "mcore" / "model").glob("*.distcp"), key=lambda f: f.stat().st_size)
    size = shard.stat().st_size
    with shard.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--to", "hf", str(tmp_path / "mcore"), str(tmp_path / "hf")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"oreal-mega convert: error: {shard}: truncated checkpoint shard "
                                       f"({size // 2} bytes, its index needs {size})\n")
    shard.unlink()
    with pytest.raises(SystemExit):
        main(["convert", "--to", "hf", str(tmp_path / "mcore"), str(tmp_path / "hf")])
    assert capsys.readouterr().err == f"oreal-mega convert: error: {shard}: checkpoint shard file is missing\n"
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("to", ["mcore", "hf"])
def test_a_destination_that_cannot_be_created_is_one_line_before_any_work(hf_model, tmp_path, capsys, to):
    """Below a file: `mkdir` fails one level down (mcore) or at the file itself (hf); named before loading."""
    source = hf_model
    if to == "hf":
        _convert("--to", "mcore", hf_model, tmp_path / "mcore")
        source = tmp_path / "mcore"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    dst, cause = ((blocker / "sub" / "out", f"{blocker / 'sub'}: Not a directory") if to == "mcore"
                  else (blocker / "out", f"{blocker} is not a directory"))
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--to", to, str(source), str(dst)])
    assert exit_.value.code == 2
    assert capsys.readouterr() == ("", f"oreal-mega convert: error: cannot create {dst}: {cause}\n")


def test_atomic_directory_replaces_only_when_complete(tmp_path):
    dest = tmp_path / "out"
    with atomic_directory(dest) as partial:
        (partial / "a").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_directory(dest, overwrite=True) as partial:
            (partial / "a").write_text("second")
            raise RuntimeError("interrupted")
    assert (dest / "a").read_text() == "first"
    with atomic_directory(dest, overwrite=True) as partial:
        (partial / "a").write_text("third")
    assert (dest / "a").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
