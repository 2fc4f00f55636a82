"""Greedy completions of an HF directory with vLLM (CPU, in-process engine), printed as JSON:
a separate process because vLLM sets up its own torch.distributed world.
Usage: weights_vllm_greedy.py MODEL_DIR MAX_TOKENS PROMPT_JSON..."""
import json
import os
import sys

if __name__ == "__main__":
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1")
    from vllm import LLM, SamplingParams, TokensPrompt

    model_dir, max_tokens, prompts = sys.argv[1], int(sys.argv[2]), [json.loads(p) for p in sys.argv[3:]]
    llm = LLM(model=model_dir, dtype="float32", max_model_len=128, seed=0,
              distributed_executor_backend="uni")
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts],
                           SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True))
    print("GREEDY " + json.dumps([list(o.outputs[0].token_ids) for o in outputs]))
