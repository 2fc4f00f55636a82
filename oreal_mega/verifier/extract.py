"""Pull the final answer out of a model response.

`extract_answer`: the last \\boxed{...} (or \\fbox{...}). `final_answer`: what the verifier judges -- the final
answer region (after the last `</think>`, `<conclude>` or `**Final Answer**`), its last group of boxes, else a
"the (final) answer is ..." statement that comes after every box, else a region that is itself a short answer
(or one short sentence around a single math span).
It never picks a number out of running text.
"""
import re

THINK_END = "</think>"
BOX_COMMANDS = ("\\boxed", "\\fbox")
FINAL_REGION_MARKERS = (THINK_END, "<conclude>", "**Final Answer**")
MAX_STATED_ANSWER_CHARS = 200  # a longer "the answer is ..." sentence is prose, not an answer
MAX_BARE_ANSWER_CHARS = 100  # a region this short, on one line and with at most MAX_ANSWER_WORDS words, is the answer
MAX_SENTENCE_CHARS = 1_000  # only this much of a statement's line is read (bounds the regex work)
MAX_STATEMENT_SEARCH_CHARS = 5_000  # answer statements are looked for at the end of the region only
MAX_ANSWER_WORDS = 2  # words outside math, e.g. `28 percent`, `12 inches`, `\text{Monday}`

_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_BACKSLASH_RUN = re.compile(r"\\+")
_DOUBLED_COMMAND = re.compile(r"\\\\[a-zA-Z]")
# boxes in one sentence form one group; `5!` is a factorial, not an exclamation
_SENTENCE_BREAK = re.compile(r"\n|(?:[.?]|(?<![\w)}\]])!)(?=\s|$)")
# "the final answer is ...", "the solution is ...", "Answer: ...", "Answer $9$"
_ANSWER_STATEMENT = re.compile(r"(?:final\s+answer|the\s+answer|the\s+solution)\s*(?:is\s*:?|:)|"
                               r"\banswer\s*(?::|(?=\s*(?:\$|\\\(|\\\[)))", re.IGNORECASE)
# "... $x \geq 5$ is the solution", "$x <= 2$ is our answer": the answer stated before the phrase
_STATED_BEFORE = re.compile(
    r"(\$[^$\n]{1,200}\$|\\\([^\n]{1,200}?\\\))\s+is\s+(?:the|our)\s+(?:final\s+)?(?:answer|solution)\b", re.IGNORECASE)
# inline math ($..$, \(..\)) stays on one line; display math ($$..$$, \[..\]) may span lines
_MATH_SPAN = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\$[^$\n]*\$|\\\([^\n]*?\\\)", re.DOTALL)
_LAST_IS = re.compile(r".*\bis\b", re.DOTALL)
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
_PUNCTUATION = " \t\n.,;:?\""  # taken off an answer's end (and, except `.`, its start: `.5` is a number)
_LEADING_PUNCTUATION = _PUNCTUATION.replace(".", "")


def undouble_backslashes(text: str) -> str:
    """`\\\\boxed{\\\\frac12}` -> `\\boxed{\\frac12}`: LaTeX that arrived escaped twice (all backslash runs even)."""
    if "\\\\" not in text or not _DOUBLED_COMMAND.search(text):
        return text
    runs = _BACKSLASH_RUN.findall(text)
    if any(len(run) % 2 for run in runs):
        return text
    return _BACKSLASH_RUN.sub(lambda run: "\\" * (len(run.group(0)) // 2), text)


def _brace_group_end(text: str, open_at: int) -> int:
    """Index just past the brace group opening at text[open_at] == "{", or -1 when it never closes.

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
                return i + 1
        i += 1
    return -1


def _box_span(text: str, after: int) -> tuple[str, int] | None:
    """(argument, end) of a box command whose name ends at `after`: `{...}` or one bare token (`\\boxed 5`)."""
    rest = text[after:]
    stripped = rest.lstrip()
    if not stripped:
        return None
    if stripped[0] == "{":
        open_at = after + len(rest) - len(stripped)
        end = _brace_group_end(text, open_at)
        return None if end < 0 else (text[open_at + 1:end - 1], end)
    if rest[0].isalpha():  # e.g. \boxedx is another command name, not a box
        return None
    token = stripped.split(None, 1)[0]
    return token.rstrip("$."), after + len(rest) - len(stripped) + len(token)


def _after_think(text: str) -> str:
    think_end = text.rfind(THINK_END)
    return text if think_end < 0 else text[think_end + len(THINK_END):]


def extract_answer(text: str) -> str | None:
    """The last boxed answer of `text` (after `</think>` when present); None if absent, empty or unclosed."""
    text = _after_think(text)
    start = max(text.rfind(command) for command in BOX_COMMANDS)
    if start < 0:
        return None
    command = next(c for c in BOX_COMMANDS if text.startswith(c, start))
    span = _box_span(text, start + len(command))
    if span is None or not span[0].strip():
        return None
    return span[0].strip()


def final_region(text: str) -> str:
    """The text after the last final-answer marker (`</think>`, `<conclude>`, `**Final Answer**`)."""
    cut = 0
    for marker in FINAL_REGION_MARKERS:
        at = text.rfind(marker)
        if at >= 0:
            cut = max(cut, at + len(marker))
    return text[cut:].replace("</conclude>", "")


def _boxes(region: str) -> list[tuple[int, int, str]] | None:
    """(start, end, content) of every box in the region; None when one never closes (the response was cut)."""
    boxes = []
    for match in _BOX_START.finditer(region):
        if boxes and match.start() < boxes[-1][1]:
            continue  # a box inside a box
        span = _box_span(region, match.end())
        if span is None:
            return None
        boxes.append((match.start(), span[1], span[0].strip()))
    return boxes


def _last_box_group(boxes: list[tuple[int, int, str]], region: str) -> tuple[int, str]:
    """(end, answer) of the last group of boxes: a multi-part answer boxed part by part reads as `a, b`.

    Boxes in one sentence (no sentence end or line break between them) form one group; identical parts count once.
    Several different guesses boxed in one sentence therefore read as a list, which a single gold never equals,
    while a box in an earlier sentence (an intermediate result) is not part of the answer.
    """
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if _SENTENCE_BREAK.search(region[box[1]:group[0][0]]):
            break
        group.insert(0, box)
    parts = []
    for _, _, content in group:
        if content and content not in parts:
            parts.append(content)
    return group[-1][1], ", ".join(parts)


def _masked(text: str) -> str:
    """The text with every math span blanked out (same length), so that prose rules do not look inside math."""
    return _MATH_SPAN.sub(lambda span: "x" * len(span.group(0)), text)


def _trimmed(text: str) -> str:
    text = text.replace('\\"', '"')  # a quoted answer: `\"$12$ and $13$\"`
    return text.lstrip(_LEADING_PUNCTUATION).rstrip(_PUNCTUATION).strip()


def _answer_like(text: str, max_chars: int) -> bool:
    """Short, one line, at most MAX_ANSWER_WORDS words outside math -- and several words only beside a number or
    math (`28 percent`, `$5$ cm`): `Monday` is an answer, `no box` is prose."""
    if not text or len(text) > max_chars:
        return False
    prose = _MATH_SPAN.sub(" ", text)
    words = len(_WORD.findall(prose))
    if "\n" in prose or words > MAX_ANSWER_WORDS:
        return False
    return words <= 1 or prose != text or any(char.isdigit() for char in text)


def _first_sentence(text: str) -> str:
    """Text up to the first line break or sentence end outside math (`$28 \\%$. I hope...` -> `$28 \\%$`)."""
    text = text[:MAX_SENTENCE_CHARS]
    text = text[len(text) - len(text.lstrip(_LEADING_PUNCTUATION)):]
    end = _SENTENCE_BREAK.search(_masked(text))
    return text[:end.start()] if end else text


def _stated_answer(region: str) -> tuple[int, str] | None:
    """(start, answer) of the last "the (final) answer is ..." statement, when what follows reads as an answer."""
    offset = max(0, len(region) - MAX_STATEMENT_SEARCH_CHARS)
    tail = region[offset:]
    after = list(_ANSWER_STATEMENT.finditer(tail))
    before = list(_STATED_BEFORE.finditer(tail))
    if before and (not after or before[-1].start() > after[-1].start()):
        return offset + before[-1].start(), before[-1].group(1)
    if not after:
        return None
    sentence = _first_sentence(tail[after[-1].end():])
    last_is = _LAST_IS.match(_masked(sentence))  # `The largest $n$ is 34` -> `34`
    candidate = _trimmed(sentence[last_is.end():] if last_is else sentence)
    return (offset + after[-1].start(), candidate) if _answer_like(candidate, MAX_STATED_ANSWER_CHARS) else None


def final_answer(text: str) -> str | None:
    """The answer a response gives (see the module docstring); None when it gives none or is cut inside a box."""
    region = final_region(undouble_backslashes(text))
    boxes = _boxes(region)
    if boxes is None:
        return None
    stated = _stated_answer(region)
    if boxes:
        end, boxed = _last_box_group(boxes, region)
        if stated is None or stated[0] < end:
            return boxed or None
    if stated is not None:
        return stated[1]
    bare = _trimmed(region)
    if _answer_like(bare, MAX_BARE_ANSWER_CHARS):
        return bare
    return _only_math_of_one_sentence(bare)


def _only_math_of_one_sentence(text: str) -> str | None:
    """A response that is one short sentence around one math span (`The sum is $A + B$.`) answers with that span."""
    if len(text) > MAX_STATED_ANSWER_CHARS:
        return None
    spans = list(_MATH_SPAN.finditer(text))
    if len(spans) != 1 or _SENTENCE_BREAK.search(_masked(text)):
        return None
    return spans[0].group(0)


def answer_text(text: str) -> str:
    """The answer a string gives, for golds and direct comparisons: a plain answer stays as it is, a whole solution
    gives its final answer (`final_answer`), and text with no recognisable answer is compared as written."""
    return final_answer(text) or text
