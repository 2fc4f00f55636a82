"""Rollout dumps and the replay engine (no vLLM needed), the synthetic dump, and the rule that
only the vLLM engine imports vLLM."""
import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import oreal_mega
from oreal_mega.errors import UserError
from oreal_mega.rollout import RolloutEngineError, Sample, SamplingConfig
from oreal_mega.rollout.dump import StepGroup, read_step, step_path, write_step
from oreal_mega.rollout.prompts import read_prompts
from oreal_mega.rollout.replay_engine import ReplayRolloutEngine
from oreal_mega.rollout.synthetic_dump import write_synthetic_dump


def groups_of_step(step: int) -> list[StepGroup]:
    """Two prompts, three samples each; awkward values: non-ASCII text, fp32 log-probs that
    are not short decimals, a truncated sample, a prompt without gold answer."""
    generator = torch.Generator().manual_seed(step)
    groups = []
    for p, gold in enumerate(["7", None]):
        samples = []
        for j in range(3):
            length = 4 + j + p
            samples.append(Sample(p, torch.randint(0, 500, (length,), generator=generator).tolist(),
                                  f"résumé √{j} \\boxed{{{j}}}\n",
                                  -torch.rand(length, generator=generator) * 7,
                                  "length" if j == 2 else "stop"))
        groups.append(StepGroup([1, 40 + step, 41, 42 + p], gold, samples,
                                ["correct", "wrong", "truncated"], [1.0, -1.0, -1.0]))
    return groups


def assert_same_samples(actual: list[list[Sample]], expected: list[list[Sample]]) -> None:
    assert len(actual) == len(expected)
    for got_group, want_group in zip(actual, expected):
        assert len(got_group) == len(want_group)
        for got, want in zip(got_group, want_group):
            assert (got.prompt_index, got.token_ids, got.text, got.finish_reason) == \
                   (want.prompt_index, want.token_ids, want.text, want.finish_reason)
            assert got.logprobs.dtype == torch.float32
            assert torch.equal(got.logprobs, want.logprobs)  # bit-exact through JSON


@pytest.fixture
def dump_dir(tmp_path):
    for step in (0, 1, 2):
        write_step(tmp_path / "dump", step, groups_of_step(step))
    return tmp_path / "dump"


def test_dump_round_trip_is_exact_and_atomic(dump_dir):
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "step_000000.jsonl", "step_000001.jsonl", "step_000002.jsonl"]  # no partial files left
    lines = step_path(dump_dir, 1).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # one line per prompt group
    first = json.loads(lines[0])
    assert first["step"] == 1 and first["prompt_index"] == 0 and first["gold_answer"] == "7"
    assert first["samples"][2] == {**first["samples"][2], "finish_reason": "length",
                                   "verdict": "truncated", "reward": -1.0}
    expected = groups_of_step(1)
    read = read_step(dump_dir, 1)
    assert [g.prompt_ids for g in read] == [g.prompt_ids for g in expected]
    assert [g.gold for g in read] == ["7", None]
    assert [g.verdicts for g in read] == [g.verdicts for g in expected]
    assert [g.rewards for g in read] == [g.rewards for g in expected]
    assert_same_samples([g.samples for g in read], [g.samples for g in expected])
    write_step(dump_dir, 1, groups_of_step(5))  # rewriting a step replaces the file whole
    assert read_step(dump_dir, 1)[0].prompt_ids == groups_of_step(5)[0].prompt_ids


def test_only_global_rank_0_writes(tmp_path, monkeypatch):
    """Logic test: torch.distributed is faked to report rank 1."""
    import oreal_mega.rollout.dump as dump
    monkeypatch.setattr(dump.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dump.dist, "get_rank", lambda: 1)
    assert write_step(tmp_path / "dump", 0, groups_of_step(0)) is None
    assert not (tmp_path / "dump").exists()


@pytest.mark.parametrize("field, value, message", [
    ("verdict", "maybe", r"step_000000.jsonl:2: samples\[1\].verdict=\"maybe\"; expected one of correct"),
    ("logprobs", [-0.5], r"step_000000.jsonl:2: samples\[1\].logprobs=\[-0.5\]; expected 6 numbers"),
    ("finish_reason", "abort", r"samples\[1\].finish_reason=\"abort\"; expected stop or length"),
])
def test_a_bad_dump_field_names_file_line_and_key(dump_dir, field, value, message):
    path = step_path(dump_dir, 0)
    lines = path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[1])
    item["samples"][1][field] = value
    lines[1] = json.dumps(item)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=message):
        read_step(dump_dir, 0)


def test_replay_engine_serves_the_dumped_step(dump_dir):
    engine = ReplayRolloutEngine(dump_dir)
    assert engine.samples_from_policy is False
    expected = groups_of_step(2)
    prompt_ids, golds = engine.prompts_for_step(2)
    assert prompt_ids == [g.prompt_ids for g in expected] and golds == ["7", None]
    samples = engine.generate(prompt_ids, SamplingConfig(n=3, seed=12345), step=2)
    assert_same_samples(samples, [g.samples for g in expected])
    assert engine.verdicts_for_step(2) == [g.verdicts for g in expected]
    assert_same_samples(engine.generate(engine.prompts_for_step(0)[0], SamplingConfig(n=3), step=0),
                        [g.samples for g in groups_of_step(0)])

    def stream():
        raise AssertionError("the replay engine must not consume the weight stream")
        yield
    stats = engine.update_weights(stream())
    assert (stats.bytes, stats.buckets, stats.tensors, stats.seconds) == (0, 0, 0, 0.0)
    engine.sleep()
    engine.wake(("weights",))
    engine.wake(("kv_cache",))
    with pytest.raises(RolloutEngineError, match="no policy"):
        engine.prompt_logprobs([[1, 2, 3]])
    engine.shutdown()
    with pytest.raises(RolloutEngineError, match="shut down"):
        engine.generate(prompt_ids, SamplingConfig(n=3), step=2)


def test_replay_engine_refuses_what_the_dump_does_not_hold(dump_dir, tmp_path):
    engine = ReplayRolloutEngine(dump_dir)
    prompt_ids, _ = engine.prompts_for_step(1)
    with pytest.raises(RolloutEngineError, match="step=STEP"):
        engine.generate(prompt_ids, SamplingConfig(n=3))
    changed = [prompt_ids[0], prompt_ids[1][:2] + [499] + prompt_ids[1][3:]]
    with pytest.raises(UserError, match=r"step_000001.jsonl: step 1, prompt 1: .* from token 2 on"):
        engine.generate(changed, SamplingConfig(n=3), step=1)
    with pytest.raises(UserError, match=r"step_000001.jsonl: step 1 was dumped with 2 prompts; 1 were"):
        engine.generate(prompt_ids[:1], SamplingConfig(n=3), step=1)
    with pytest.raises(UserError, match=r"prompt 0 has 3 dumped samples; sampling asks for n=4"):
        engine.generate(prompt_ids, SamplingConfig(n=4), step=1)
    with pytest.raises(UserError, match=r"step_000007.jsonl: no rollout dump for step 7 .*steps 0..2"):
        engine.generate(prompt_ids, SamplingConfig(n=3), step=7)
    with pytest.raises(UserError, match="rollout.replay_dir=.*no such directory"):
        ReplayRolloutEngine(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no step_"):
        ReplayRolloutEngine(tmp_path / "empty")


def test_synthetic_dump_has_realistic_lengths_and_mixed_verdicts(tmp_path):
    kwargs = dict(steps=3, prompts=16, n=8, vocab_size=1000, prompt_len=(5, 20),
                  response_len=(10, 40), seed=3)
    prompts_file = write_synthetic_dump(tmp_path / "a", **kwargs)
    records = read_prompts(prompts_file)
    assert len(records) == 48 and all(r.gold is not None for r in records)
    engine = ReplayRolloutEngine(tmp_path / "a")
    kinds = []
    for step in range(3):
        prompt_ids, golds = engine.prompts_for_step(step)
        assert golds == [records[step * 16 + i].gold for i in range(16)]
        assert all(5 <= len(ids) <= 20 and max(ids) < 1000 for ids in prompt_ids)
        samples = engine.generate(prompt_ids, SamplingConfig(n=8), step=step)
        for group, verdicts in zip(samples, engine.verdicts_for_step(step)):
            correct = sum(v == "correct" for v in verdicts)
            kinds.append("all" if correct == 8 else "none" if correct == 0 else "mixed")
            for sample, verdict in zip(group, verdicts):
                assert 10 <= len(sample.token_ids) <= 40 and max(sample.token_ids) < 1000
                assert (sample.logprobs <= 0).all() and sample.logprobs.dtype == torch.float32
                assert (verdict == "truncated") == (sample.finish_reason == "length")
                if verdict == "truncated":
                    assert len(sample.token_ids) == 40
    assert kinds.count("mixed") > len(kinds) / 2 and "all" in kinds and "none" in kinds
    assert {v for step in range(3) for vs in engine.verdicts_for_step(step) for v in vs} == {
        "correct", "wrong", "no_answer", "truncated"}
    write_synthetic_dump(tmp_path / "b", **kwargs)
    for name in ("step_000002.jsonl", "prompts.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert read_step(tmp_path / "a", 0)[0].rewards[0] in (1.0, -1.0)  # the default objective


def test_replay_and_dumps_work_without_vllm(tmp_path):
    """A subprocess in which every `import vllm...` fails, as on a GPU machine without vLLM."""
    script = textwrap.dedent(f"""
        import importlib.abc, sys

        class NoVLLM(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "vllm" or name.startswith("vllm."):
                    raise ImportError(f"vLLM is hidden in this test ({{name}})")

        sys.meta_path.insert(0, NoVLLM())
        import oreal_mega, oreal_mega.rollout, oreal_mega.rollout.vllm_engine
        from oreal_mega.rollout import SamplingConfig
        from oreal_mega.rollout.replay_engine import ReplayRolloutEngine
        from oreal_mega.rollout.synthetic_dump import write_synthetic_dump
        write_synthetic_dump({str(tmp_path)!r}, steps=1, prompts=2, n=2, vocab_size=50,
                             prompt_len=(3, 5), response_len=(2, 6))
        engine = ReplayRolloutEngine({str(tmp_path)!r})
        prompt_ids, _ = engine.prompts_for_step(0)
        assert len(engine.generate(prompt_ids, SamplingConfig(n=2), step=0)) == 2
        assert not [m for m in sys.modules if m.split(".")[0] == "vllm"]
        try:
            oreal_mega.rollout.vllm_engine.VLLMRolloutEngine("model")
        except oreal_mega.rollout.RolloutEngineError as err:
            print("BUILD FAILS:", err)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(oreal_mega.__file__).parents[1], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BUILD FAILS: the vLLM rollout engine needs vLLM, which cannot be imported here " \
           "(vLLM is hidden in this test (vllm)); without vLLM use rollout.engine: replay" \
           in result.stdout


VLLM_ONLY_MODULES = {"rollout/weight_transfer.py"}  # imported from vllm_engine's builder only


def test_no_module_imports_vllm_at_import_time():
    """Module-level (not inside a function) imports of vLLM, or of the vLLM-only modules."""
    root = Path(oreal_mega.__file__).parent
    forbidden = ("vllm", "oreal_mega.rollout.weight_transfer")
    offenders = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in VLLM_ONLY_MODULES:
            continue
        for node in _module_level_statements(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == f or n.startswith(f + ".") for n in names for f in forbidden):
                offenders.append(f"{relative}:{node.lineno}")
    assert not offenders


def _module_level_statements(node: ast.AST):
    """Every node executed at import: into if/try/with/class bodies, not into functions."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield child
        yield from _module_level_statements(child)
