"""Pull the final answer out of a model response: the last \\boxed{...} (or \\fbox{...})."""

THINK_END = "</think>"
BOX_COMMANDS = ("\\boxed", "\\fbox")


def _braced_content(text: str, open_at: int) -> str | None:
    """Content of the brace group opening at text[open_at] == "{", or None when it never closes.

    Escaped braces (\\{ and \\}) are literal characters, not grouping.
    """
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i]
        i += 1
    return None


def _box_argument(text: str, after: int) -> str | None:
    """The argument of a box command whose name ends at `after`: `{...}` or one bare token (`\\boxed 5`)."""
    rest = text[after:]
    stripped = rest.lstrip()
    if not stripped:
        return None
    if stripped[0] == "{":
        return _braced_content(text, after + len(rest) - len(stripped))
    if rest[0].isalpha():  # e.g. \boxedx is another command name, not a box
        return None
    token = stripped.split(None, 1)[0]
    return token.rstrip("$.")


def extract_answer(text: str) -> str | None:
    """The last boxed answer of `text` (after `</think>` when present); None if absent, empty or unclosed.

    Never guesses from free text: an unboxed answer is no answer.
    """
    think_end = text.rfind(THINK_END)
    if think_end >= 0:
        text = text[think_end + len(THINK_END):]
    start = max(text.rfind(command) for command in BOX_COMMANDS)
    if start < 0:
        return None
    command = next(c for c in BOX_COMMANDS if text.startswith(c, start))
    answer = _box_argument(text, start + len(command))
    if answer is None or not answer.strip():
        return None
    return answer.strip()
