"""Small byte-level BPE tokenizers trained locally, saved as HF tokenizers with a chat template.

Byte-level: every string round-trips and every id decodes, so a model sampling any id in
[0, vocab_size) can be detokenized. The special tokens get ids 0, 1, 2; the end-of-turn token
`<|im_end|>` is the EOS token, as in Qwen2 chat models.

The BPE is trained with Qwen2's own text pipeline (NFC, Qwen2's split regex — one token per
digit — then bytes), because transformers' AutoTokenizer rebuilds any tokenizer found next to
a Qwen2 config with that pipeline: trained any other way, the merges would not be the ones
applied at load time and AutoTokenizer would tokenize differently from the saved file.
"""
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
CHAT_ROLES = ("system", "user", "assistant")

# Qwen-style chat template: <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def special_token_id(token: str) -> int:
    return SPECIAL_TOKENS.index(token)


def build_tokenizer(directory: str | Path, corpus: Iterable[str], vocab_size: int = 512):
    """Train a byte-level BPE of at most `vocab_size` tokens on `corpus`, save it to
    `directory` as a `PreTrainedTokenizerFast` (chat template, EOS `<|im_end|>`) and return it.

    When the corpus runs out of merges first, the remaining ids become reserved special tokens
    `<|reserved_i|>`, so that the tokenizer has exactly `vocab_size` ids, like the model's
    embedding table. The corpus should contain the chat roles' names so that they become
    single tokens.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    reserved = vocab_size - tokenizer.get_vocab_size()
    tokenizer.add_special_tokens([AddedToken(f"<|reserved_{index}|>", special=True)
                                  for index in range(reserved)])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
    )
    wrapped.save_pretrained(str(directory))
    return wrapped
