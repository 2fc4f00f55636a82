"""`python -m oreal_mega.testing.no_vllm ARGS...`: the `oreal-mega` command (e.g. `train CONFIG` under
torchrun) in a process where every `import vllm...` fails, as on a machine without vLLM."""
import importlib.abc
import sys


class HideVLLM(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError(f"vLLM is hidden in this process ({name})")


if __name__ == "__main__":
    sys.meta_path.insert(0, HideVLLM())
    from oreal_mega.cli import main

    main(sys.argv[1:])
