"""SFT: data errors name the line; a short real run (megatron on gloo, 2 processes) lowers the loss
and exports an HF model that transformers loads."""
import json
import re
import socket
import subprocess
import sys

import pytest
import yaml

from oreal_mega.errors import UserError
from oreal_mega.testing.launch import torchrun


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    subprocess.run([sys.executable, "-m", "oreal_mega", "data", "synthetic", "--out", str(root), "--seed", "3",
                    "--train", "512", "--rl", "8", "--eval", "8", "--levels", "1"], check=True, capture_output=True)
    return root


def test_malformed_examples_are_named(task, tmp_path):
    from transformers import AutoTokenizer

    from oreal_mega.trainer.sft import read_examples

    tokenizer = AutoTokenizer.from_pretrained(task / "model")
    bad = tmp_path / "bad.jsonl"
    for lines, message in [
        (['{"prompt": "1+1?", "response": "2"}', "{oops"], r"bad.jsonl:2: not valid JSON"),
        (['{"prompt": "1+1?"}'], r"bad.jsonl:1: the response must be a non-empty string"),
        (['{"messages": [{"role": "user", "content": "hi"}]}'], r"bad.jsonl:1: the last message must be"),
        (['{"question": "1+1?"}'], r"bad.jsonl:1: expected 'prompt' \+ 'response'"),
        (['{"prompt": "1+1?", "response": "' + "2 " * 200 + '"}'], r"bad.jsonl:1: \d+ tokens exceed data.max_length=64"),
    ]:
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(UserError, match=message):
            read_examples(bad, tokenizer, None, max_length=64)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "1+1?"},
                                             {"role": "assistant", "content": "\\boxed{2}"}]}) + "\n")
    [example] = read_examples(chat, tokenizer, "Answer in a box.", max_length=256)
    assert example.response_ids[-1] == tokenizer.eos_token_id
    assert "Answer in a box." in tokenizer.decode(example.prompt_ids)


@pytest.mark.slow
def test_short_sft_run_lowers_loss_and_exports(task, tmp_path):
    config = {
        "model": {"path": str(task / "model"), "dtype": "float32"},
        "data": {"path": str(task / "sft.jsonl"), "sequences_per_step": 64, "epochs": 2},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "weight_decay": 0.0},
        "train": {"micro_batch_tokens": 2048, "out_dir": str(tmp_path / "run"), "save_every": 0,
                  "tensorboard": False},
    }
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(config))
    torchrun("-m oreal_mega sft", 2, [path])
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 16
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "hf")
    assert model.config.tie_word_embeddings == json.loads((task / "model" / "config.json").read_text())["tie_word_embeddings"]


@pytest.mark.slow
def test_a_second_run_on_a_locked_directory_stops_naming_the_holder(task, tmp_path):
    from oreal_mega.testing.launch import _free_port

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from oreal_mega.trainer.run_lock import "
                               "RunLock; RunLock(sys.argv[1]).acquire(); print(flush=True); time.sleep(120)", str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        path = tmp_path / "sft.yaml"
        path.write_text(yaml.safe_dump({"model": {"path": str(task / "model"), "dtype": "float32"},
                                        "data": {"path": str(task / "sft.jsonl")}, "train": {"out_dir": str(run)}}))
        out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                              f"--master-port={_free_port()}", "-m", "oreal_mega", "sft", str(path)],
                             capture_output=True, text=True, timeout=600)
    finally:
        holder.kill()
        holder.wait()
    errors = [line for line in out.stderr.splitlines() if line.startswith("oreal-mega sft: error")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert errors[0].startswith(f"oreal-mega sft: error: {run} is in use by another run (pid {holder.pid} on "
                                f"{socket.gethostname()}, started ")
    assert re.findall(r"exitcode +: (-?\d+)", out.stderr) == ["2", "2"], out.stderr[-3000:]  # no rank crashed
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]  # nothing written by the second run
