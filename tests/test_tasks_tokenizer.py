"""The synthetic task's tokenizer and the demo model directory."""
import json
from importlib import resources

import pytest
import torch

from oreal_mega.tasks.demo_model import make_demo_model_dir, task_corpus
from oreal_mega.tasks.synthetic_math import LEVELS, generate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_demo_model_dir(tmp_path_factory.mktemp("demo") / "model", seed=3)


@pytest.fixture(scope="module")
def tokenizers(model_dir):
    """What the trainer and vLLM load (AutoTokenizer) and the saved file read as it is."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    return (AutoTokenizer.from_pretrained(str(model_dir)),
            PreTrainedTokenizerFast.from_pretrained(str(model_dir)))


def chat_text(tokenizer, problem) -> str:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": problem["question"]}],
                                           add_generation_prompt=True, tokenize=False)
    return prompt + problem["solution"] + tokenizer.eos_token


def test_task_text_round_trips_and_both_loaders_agree(tokenizers):
    auto, saved = tokenizers
    assert len(auto) == len(saved) == 512
    assert auto.eos_token == "<|im_end|>" and auto.eos_token_id == 2
    for problem in generate(300, seed=9, levels=LEVELS):
        text = chat_text(auto, problem)
        ids = auto(text, add_special_tokens=False)["input_ids"]
        assert ids == saved(text, add_special_tokens=False)["input_ids"]
        assert auto.decode(ids) == text
        assert ids[-1] == auto.eos_token_id
        assert len(auto(problem["solution"])["input_ids"]) <= 45, problem


def test_digits_are_single_tokens_and_roles_are_one_token(tokenizers):
    auto, _ = tokenizers
    assert auto.tokenize("127+38=165.\n") == ["1", "2", "7", "+", "3", "8", "=", "1", "6", "5", ".Ċ"]
    for role in ("system", "user", "assistant"):
        assert len(auto(role)["input_ids"]) == 1
    text = "\u00e9t\u00e9 \u2211 \U0001f600 <|im_start|>x"  # outside the corpus: bytes still round-trip
    assert auto.decode(auto(text)["input_ids"]) == text
    every_id = auto.decode(list(range(512)))  # every id decodes, reserved ones included
    assert "<|reserved_0|>" in every_id


def test_corpus_names_the_chat_roles():
    line = task_corpus(generate(1, seed=0))[0]
    assert line.startswith("system\nuser\n") and "\nassistant\n" in line


def test_demo_model_dir_loads_with_the_shipped_config(model_dir):
    from transformers import AutoModelForCausalLM, GenerationConfig
    shipped = json.loads((resources.files("oreal_mega") / "data" / "tiny-qwen2.json").read_text())
    saved = json.loads((model_dir / "config.json").read_text())
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim", "tie_word_embeddings"):
        assert saved[key] == shipped[key], key
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert model.dtype == torch.float32
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert 0.7e6 < sum(p.numel() for p in model.parameters()) < 1.0e6
    # trainable init (std initializer_range), not the large random weights of parity tests
    std = model.model.layers[0].mlp.up_proj.weight.std().item()
    assert abs(std - saved["initializer_range"]) < 0.2 * saved["initializer_range"]
    assert GenerationConfig.from_pretrained(str(model_dir)).eos_token_id == 2


def test_demo_model_init_is_seeded(tmp_path, model_dir):
    from safetensors.torch import load_file
    again = load_file(str(make_demo_model_dir(tmp_path / "again", seed=3) / "model.safetensors"))
    other = load_file(str(make_demo_model_dir(tmp_path / "other", seed=4) / "model.safetensors"))
    reference = load_file(str(model_dir / "model.safetensors"))
    assert all(torch.equal(reference[name], again[name]) for name in reference)
    assert not torch.equal(reference["model.embed_tokens.weight"],
                           other["model.embed_tokens.weight"])


def test_demo_model_scales_in_width_and_depth(tmp_path):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(make_demo_model_dir(tmp_path / "big", hidden_size=256, layers=6)))
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size, config.head_dim) == (256, 6, 8, 4, 704, 32)
    assert 4.0e6 < sum(p.numel() for p in model.parameters()) < 5.0e6
