"""The non-weight files of an HF model directory: config, generation config, tokenizer."""
import json
import shutil
from pathlib import Path

_TOKENIZER_PATTERNS = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*",
                       "merges.txt", "chat_template.*", "*.tiktoken")
_GENERATION_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


def copy_model_files(src: str | Path, dst: str | Path, dtype_name: str | None = None) -> None:
    """Copy config.json (its dtype set to `dtype_name` when given), generation_config.json
    (derived from the config's token ids when the source has none) and the tokenizer files."""
    src, dst = Path(src), Path(dst)
    config = json.loads((src / "config.json").read_text())
    if dtype_name is not None:
        keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["dtype"]
        config.update({k: dtype_name for k in keys})
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if (src / "generation_config.json").is_file():
        shutil.copy2(src / "generation_config.json", dst)
    else:
        generation = {k: config[k] for k in _GENERATION_KEYS if config.get(k) is not None}
        (dst / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    for pattern in _TOKENIZER_PATTERNS:
        for file in src.glob(pattern):
            if file.is_file():
                shutil.copy2(file, dst)
