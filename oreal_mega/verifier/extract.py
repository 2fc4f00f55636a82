"""Pull the final answer out of a model response.

`extract_answer`: the last \\boxed{...} (or \\fbox{...}). `final_answer`: what the verifier judges -- the final
answer region (after the last `</think>`, `<conclude>` or a "Final Answer" heading), its last group of boxes, else a
"the (final) answer is ..." / "Answer: ..." / `#### N` statement that comes after every box, else a region that is
itself a short answer (or one short sentence around a single math span). Words around the value (`\\text{The
answer is } 5`, `5 apples`) are dropped, a known unit is kept. It picks a number out of running text only with
`fallback="last_number"`.
"""
import re

THINK_END = "</think>"
BOX_COMMANDS = ("\\boxed", "\\fbox")
FINAL_REGION_MARKERS = (THINK_END, "<conclude>", "**Final Answer**")
FALLBACKS = ("none", "last_number")  # what a response with no explicit answer gives: nothing, or its last number
MAX_STATED_ANSWER_CHARS = 200  # a longer "the answer is ..." sentence is prose, not an answer
MAX_BARE_ANSWER_CHARS = 100  # a region this short, on one line and with at most MAX_ANSWER_WORDS words, is the answer
MAX_SENTENCE_CHARS = 1_000  # only this much of a statement's line is read (bounds the regex work)
MAX_STATEMENT_SEARCH_CHARS = 5_000  # answer statements are looked for at the end of the region only
MAX_ANSWER_WORDS = 2  # words outside math, e.g. `28 percent`, `12 inches`, `\text{Monday}`
MAX_SAME_VALUE_PARTS = 4  # boxes in one group compared with each other for "one value in different forms"
MAX_LAST_NUMBER_SEARCH_CHARS = 2_000  # fallback "last_number" reads the end of the region only

_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_BACKSLASH_RUN = re.compile(r"\\+")
_DOUBLED_COMMAND = re.compile(r"\\\\[a-zA-Z]")
# boxes in one sentence form one group; `5!` is a factorial, not an exclamation
_SENTENCE_BREAK = re.compile(r"\n|(?:[.?]|(?<![\w)}\]])!)(?=\s|$)")
# a line that is only a "Final Answer" heading (`## Final Answer`, `**Final Answer:**`) opens the final region
_FINAL_ANSWER_HEADING = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*|\*\*)?final[ \t]+answer[ \t]*:?[ \t]*"
                                   r"(?:\*\*)?[ \t]*:?[ \t]*$",
                                   re.IGNORECASE | re.MULTILINE)
# "the final answer is ...", "the solution is ...", "Answer: ...", "**Answer:** ...", "Answer $9$"
_ANSWER_STATEMENT = re.compile(r"(?:final\s+answer|the\s+answer|the\s+solution)(?:\*\*)?\s*(?:is\s*:?|:)|"
                               r"\banswer(?:\*\*)?\s*(?::|(?=\s*(?:\$|\\\(|\\\[)))", re.IGNORECASE)
# GSM8K's final-answer line `#### 72`; a markdown heading (`#### Step 2`, `#### 1. Setup`) is not one
_HASH_ANSWER = re.compile(r"^[ \t]*####[ \t]*(?=[^\s#])(?![a-zA-Z]{2})([^\n]{1,200})$", re.MULTILINE)
# "... $x \geq 5$ is the solution", "$x <= 2$ is our answer": the answer stated before the phrase
_STATED_BEFORE = re.compile(
    r"(\$[^$\n]{1,200}\$|\\\([^\n]{1,200}?\\\))\s+is\s+(?:the|our)\s+(?:final\s+)?(?:answer|solution)\b", re.IGNORECASE)
# inline math ($..$, \(..\)) stays on one line; display math ($$..$$, \[..\]) may span lines
_MATH_SPAN = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\$[^$\n]*\$|\\\([^\n]*?\\\)", re.DOTALL)
_LAST_IS = re.compile(r".*\bis\b", re.DOTALL)
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
# taken off an answer's end (and, except `.`, its start: `.5` is a number); `*` is markdown bold
_PUNCTUATION = " \t\n.,;:?\"*"
_TEXT_COMMAND = re.compile(r"\\(?:text|mbox|textnormal|textbf|textit)\s*\{([^{}]*)\}")
# prose words dropped before a value (`The answer is 5`, `Answer: 5`); `a`/`an` only before another word; a
# negation or qualifier stops it (`not 72`, `at least 5` are not the answer 72, 5)
_QUALIFIERS = ("not|no|never|cannot|nor|neither|at|least|most|more|less|fewer|than|over|under|about|approximately|"
               "nearly|almost|around|except")
_LEADING_PROSE = re.compile(rf"(?:(?:(?<![\\a-zA-Z])(?!(?:{_QUALIFIERS})\b)[a-zA-Z]{{2,}}|\b[aA]n?(?=\s+[a-zA-Z]{{2}}))"
                            r"[:,]?\s+)+")
_TRAILING_WORDS = re.compile(r"(?<=[\d}).$])\s+([a-zA-Z]{2,}(?:[ \t]+[a-zA-Z]{2,})*)[ \t]*$")
# words after a number that change its value: never dropped (`5 million` is not 5)
_VALUE_WORDS = re.compile(r"\b(?:hundreds?|thousands?|millions?|billions?|trillions?|dozens?|squared|cubed|times|"
                          r"halves|half|thirds?|quarters?|fourths?|fifths?|factorial|over|plus|minus|pi|sqrt|sin|cos|"
                          r"tan|log|ln|exp|mod|and|or|percent|pct|percentage|not|no|to)\b", re.IGNORECASE)
_LAST_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|-?\d+(?:\.\d+)?|-?\.\d+")
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
    """The text after the last final-answer marker (`</think>`, `<conclude>`, `**Final Answer**`, or a line that is
    only a "Final Answer" heading)."""
    cut = 0
    for marker in FINAL_REGION_MARKERS:
        at = text.rfind(marker)
        if at >= 0:
            cut = max(cut, at + len(marker))
    for heading in _FINAL_ANSWER_HEADING.finditer(text, cut):
        cut = max(cut, heading.end())
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

    Boxes in one sentence (no sentence end or line break between them) form one group; identical parts count once,
    and so do parts that state one value in different forms (`\\boxed{\\frac72}, or \\boxed{3.5}`). Several
    different guesses boxed in one sentence therefore read as a list, which a single gold never equals, while a box
    in an earlier sentence (an intermediate result) is not part of the answer.
    """
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if _SENTENCE_BREAK.search(region[box[1]:group[0][0]]):
            break
        group.insert(0, box)
    parts = []
    for _, _, content in group:
        content = value_in_words(content)
        if content and content not in parts:
            parts.append(content)
    if len(parts) > 1 and _one_value(parts):
        parts = parts[-1:]
    return group[-1][1], ", ".join(parts)


def _one_value(parts: list[str]) -> bool:
    """All parts are one value written in different forms (a handful of parts at most)."""
    from oreal_mega.verifier.equivalence import answers_equal  # imported here: equivalence imports this module
    return len(parts) <= MAX_SAME_VALUE_PARTS and all(answers_equal(part, parts[-1]) for part in parts[:-1])


def value_in_words(answer: str) -> str:
    """The value of an answer written with words around it: `\\text{The answer is } 5` -> `5`, `\\text{5 apples}`
    -> `5\\text{ apples}` (a word after the value is kept as its unit, which equivalence compares when it is a known
    one). Words that change the value (`5 million`, `3 squared`) and answers that are only words (`\\text{Monday}`)
    are left as they are."""
    if len(answer) > MAX_STATED_ANSWER_CHARS or not _WORD.search(answer):
        return answer
    flat = _TEXT_COMMAND.sub(lambda group: f" {group.group(1)} ", answer).strip()
    leading = _LEADING_PROSE.match(flat)
    if leading and not re.match(r"[=<>]|\\(?:le|ge|ne)", flat[leading.end():]):
        flat = flat[leading.end():]
    trailing = _TRAILING_WORDS.search(flat)
    core, unit = (flat[:trailing.start()], trailing.group(1).strip()) if trailing else (flat, "")
    core = core.strip()
    if (not re.search(r"[\d\\$]", core) or _WORD.search(_MATH_SPAN.sub(" ", core))
            or (unit and _VALUE_WORDS.search(unit)) or core == answer):
        return answer
    return f"{core}\\text{{ {unit}}}" if unit else core


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


def _hash_answer(tail: str) -> tuple[int, str] | None:
    """(start, answer) of the last GSM8K-style `#### 72` line whose text is a value, not a heading."""
    if "####" not in tail:
        return None
    for line in reversed(list(_HASH_ANSWER.finditer(tail))):
        candidate = _trimmed(line.group(1))
        if candidate and not _SENTENCE_BREAK.search(_masked(candidate)):
            value = value_in_words(candidate)
            if not _WORD.search(_MATH_SPAN.sub(" ", _TEXT_COMMAND.sub(" ", value))):
                return line.start(), value
    return None


def _stated_answer(region: str) -> tuple[int, str] | None:
    """(start, answer) of the last "the (final) answer is ..." / `#### N` statement, when what follows reads as an
    answer."""
    offset = max(0, len(region) - MAX_STATEMENT_SEARCH_CHARS)
    tail = region[offset:]
    after = list(_ANSWER_STATEMENT.finditer(tail))
    before = list(_STATED_BEFORE.finditer(tail))
    hashed = _hash_answer(tail)
    stated = None
    if before and (not after or before[-1].start() > after[-1].start()):
        stated = before[-1].start(), before[-1].group(1)
    elif after:
        sentence = _first_sentence(tail[after[-1].end():])
        last_is = _LAST_IS.match(_masked(sentence))  # `The largest $n$ is 34` -> `34`
        candidate = _trimmed(sentence[last_is.end():] if last_is else sentence)
        if _answer_like(candidate, MAX_STATED_ANSWER_CHARS):
            stated = after[-1].start(), candidate
    if hashed is not None and (stated is None or hashed[0] > stated[0]):
        stated = hashed
    return None if stated is None else (offset + stated[0], stated[1])


def _states_a_value(answer: str) -> bool:
    """The statement starts with its value (`$10,455$`, `42 dollars`), not with words (`correct since 9+9=18`)."""
    return _WORD.match(answer) is None


def final_answer(text: str, fallback: str = "none") -> str | None:
    """The answer a response gives (see the module docstring); None when it gives none or is cut inside a box.

    A statement after the last box group replaces the boxes only when it starts with its value: the narrative that
    follows a boxed answer (`\\boxed{18}. Check: the answer is correct since 9+9=18`) does not. `fallback`
    ("none" | "last_number") says what a response without any explicit answer gives: nothing, or the last number
    of its final region (as math-verify does)."""
    region = final_region(undouble_backslashes(text))
    boxes = _boxes(region)
    if boxes is None:
        return None
    stated = _stated_answer(region)
    if boxes:
        end, boxed = _last_box_group(boxes, region)
        if stated is None or stated[0] < end or not _states_a_value(stated[1]):
            return boxed or None
    if stated is not None:
        return value_in_words(stated[1])
    bare = _trimmed(region)
    if _answer_like(bare, MAX_BARE_ANSWER_CHARS):
        return value_in_words(bare)
    answer = _only_math_of_one_sentence(bare)
    if answer is None and fallback == "last_number":
        numbers = _LAST_NUMBER.findall(region[-MAX_LAST_NUMBER_SEARCH_CHARS:])
        answer = numbers[-1] if numbers else None
    return answer


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
