"""torchrun worker: the vLLM engine under a torchrun world on CPU, i.e. vLLM's external_launcher
executor (the GPU layout). Checks on every rank: the executor and layout vLLM was built with,
that all ranks return the same samples for every prompt, and that after a weight sync the rank's
engine computes the pushed policy (prompt and sampled-token log-probs vs a float64 transformers
forward). Then the parity contract at this rollout TP: the engine's weight fingerprints, combined
over its TP group, equal the trainer's of the full tensors; bf16-sized noise on the trainer's
log-probs does not stop; one corrupted layer stops, naming it. Prints "RANK r OK" at the end.
Usage: rollout_external_launcher.py MODEL_DIR ROLLOUT_TP"""
import sys

import torch
import torch.distributed as dist

PROMPTS = [[1, 57, 74, 298, 347], [1, 21, 329, 223, 22, 33], [1, 5, 6]]  # 3: uneven over 2 replicas
PROBE = [1, 57, 74, 298, 347, 223, 21, 329, 223, 22, 33, 2, 201, 1, 67, 85]


def reference_logprobs(model, token_ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0]
    return logits.log_softmax(-1)[:-1].gather(-1, torch.tensor(token_ids[1:])[:, None])[:, 0]


def main():
    model_dir, rollout_tp = sys.argv[1], int(sys.argv[2])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from transformers import AutoModelForCausalLM

    from oreal_mega.rollout import SamplingConfig
    from oreal_mega.rollout.parity import (ParityLevels, PolicyParityError, check_parity, trainer_fingerprints,
                                           weight_differences)
    from oreal_mega.rollout.vllm_engine import VLLMRolloutEngine

    engine = VLLMRolloutEngine(model_dir, dtype="float32", max_model_len=64, rollout_tp=rollout_tp)
    parallel = engine.llm.llm_engine.vllm_config.parallel_config
    layout = (parallel.distributed_executor_backend, parallel.tensor_parallel_size,
              parallel.data_parallel_size)
    assert layout == ("external_launcher", rollout_tp, world // rollout_tp), layout

    sampling = SamplingConfig(n=2, max_tokens=8, seed=3)
    samples = engine.generate(PROMPTS, sampling)
    gathered = [None] * world
    dist.all_gather_object(gathered, [[s.token_ids for s in group] for group in samples])
    assert len(gathered[0]) == len(PROMPTS) and all(part == gathered[0] for part in gathered)

    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).eval()
    generator = torch.Generator().manual_seed(1)  # the same perturbation on every rank
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator, dtype=torch.float64))
    state = {name: t.float() for name, t in policy.state_dict().items()}
    engine.update_weights(state.items())
    trainer_logp = reference_logprobs(policy, PROBE)
    gap = (engine.prompt_logprobs([PROBE])[0].double() - trainer_logp).abs().max()
    assert gap <= 1e-4, f"prompt log-probs differ by {gap:.3e} after the sync"
    for prompt, group in zip(PROMPTS, engine.generate(PROMPTS, sampling)):
        for sample in group:
            expected = reference_logprobs(policy, prompt + sample.token_ids)[len(prompt) - 1:]
            assert (sample.logprobs.double() - expected).abs().max() <= 1e-4

    trainer_fp = trainer_fingerprints(state.items())
    engine_fp = engine.weight_fingerprints()
    worst_group, worst = weight_differences(trainer_fp, engine_fp)[0]
    assert worst <= ParityLevels.for_dtype("float32").fingerprint_tolerance, (worst_group, worst)
    assert {group for group in trainer_fp if group.startswith("layers.")} <= set(engine_fp)
    noise = torch.randn(trainer_logp.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    verdict = check_parity(engine.prompt_logprobs([PROBE]), [trainer_logp + 0.02 * noise],
                           ParityLevels.for_dtype("bfloat16"), trainer_fp, engine_fp)
    assert verdict.outcome == "ok", verdict.message()
    corrupted = dict(state, **{"model.layers.1.mlp.up_proj.weight": state["model.layers.1.mlp.up_proj.weight"] * 1.5})
    engine.update_weights(corrupted.items())
    try:
        check_parity(engine.prompt_logprobs([PROBE]), [trainer_logp], ParityLevels.for_dtype("bfloat16"),
                     trainer_fp, engine.weight_fingerprints())
        raise AssertionError("a corrupted layer passed the parity check")
    except PolicyParityError as err:
        assert "weights differ from the trainer's in layers.1 " in str(err) and "layers.0" not in str(err), err
    engine.shutdown()
    print(f"RANK {rank} OK: prompt log-prob gap {gap:.2e}, fingerprints {worst:.1e} apart", flush=True)


if __name__ == "__main__":
    main()
