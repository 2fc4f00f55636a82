"""Docs, configs and code comments name only repo paths and `oreal_mega.*` names that exist.

Scanned: every *.md, the YAMLs under examples/, and the comments and docstrings of every *.py (not their
code: string literals there are data, e.g. output paths under runs/). Checked:
- a token with a slash whose first part is in TOP_LEVEL (from the repo root: a folder the repo lacks
  fails), is ./ or ../ (from the file's folder), or is a package of oreal_mega (from oreal_mega/; only with
  a file suffix or a trailing slash, so that prose like "rollout/prompt" passes); a glob must match
  something, and in `tests/<file>.py::<name>` the file must define the name;
- relative Markdown link targets, and bare *.md names (some *.md of the repo must have the name);
- dotted `oreal_mega.<module>.<name>` references (kernels/ imports as oreal_mega.kernels).
Placeholders (<...>, {...}, $VAR, ...) are not paths.
"""
import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "oreal_mega"
SKIPPED_DIRS = {".git", "__pycache__", "build", "dist", "runs", "outputs", ".pytest_cache", ".whl"}
TOP_LEVEL = {"oreal_mega", "kernels", "examples", "tests", "csrc", "docs"}
SUBPACKAGES = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}

PATH = re.compile(r"(?<![\w./\-:@~])(?:\.\.?/)*(?:[\w.*\-]+/)+[\w.*\-]*(?:::\w+)?")
DOTTED = re.compile(r"(?<![\w./\-])oreal_mega(?:\.\w+)+")
MARKDOWN_NAME = re.compile(r"(?<![\w./\-])[\w.\-]+\.md\b(?!/)")  # a bare name: some *.md of the repo has it
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
PLACEHOLDER = re.compile(r"[<>{}$]|\.\.\.")


def _files(pattern: str) -> list[Path]:
    return sorted(p for p in ROOT.rglob(pattern)
                  if not SKIPPED_DIRS & set(p.relative_to(ROOT).parts) and not p.parent.name.endswith(".egg-info"))


def _python_prose(text: str) -> list[tuple[int, str]]:
    """(line, text) of each comment and docstring (a string that is a statement of its own)."""
    prose, previous = [], tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            prose.append((token.start[0], token.string))
        elif token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT,
                                                              tokenize.DEDENT, tokenize.ENCODING):
            prose.extend((token.start[0] + i, line) for i, line in enumerate(token.string.splitlines()))
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return prose


def _texts() -> list[tuple[Path, int, str]]:
    """(file, line number, line) of every line scanned."""
    lines = []
    for path in _files("*.md") + _files("examples/**/*.yaml"):
        lines += [(path, n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    for path in _files("*.py"):
        lines += [(path, n, line) for n, line in _python_prose(path.read_text(encoding="utf-8"))]
    return lines


def _exists(token: str, source: Path) -> bool:
    """Whether `token`, found in `source`, names a file or folder that exists (True too for no repo path)."""
    token, _, test_name = token.partition("::")
    path = token.rstrip("/")
    first, file_like = path.split("/")[0], token.endswith("/") or "." in path.split("/")[-1]
    if first in (".", ".."):
        base = source.parent
    elif first in TOP_LEVEL:
        base = ROOT
    elif first in SUBPACKAGES and file_like:
        base = PACKAGE
    else:
        return True  # not a repo path: a run's output folder, an HF repo id, prose like "and/or"
    if ROOT not in [*(base / path).resolve().parents, (base / path).resolve()]:
        return False  # outside the repo: a reader's checkout has nothing there
    if "*" in path:
        return any(base.glob(path))
    return (base / path).exists() and (not test_name or test_name in _names(base / path))


def _module_file(parts: list[str]) -> Path | None:
    """The file of module `parts` (oreal_mega.kernels lives in kernels/), or None."""
    base = ROOT / "kernels" if parts[:2] == ["oreal_mega", "kernels"] else PACKAGE
    rest = parts[2:] if base.name == "kernels" else parts[1:]
    folder = base.joinpath(*rest)
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    if folder.with_suffix(".py").is_file():
        return folder.with_suffix(".py")
    return next(folder.parent.glob(f"{folder.name}.*.so"), None)  # a compiled extension: no names to check


def _names(module: Path) -> set[str]:
    """The names a module defines at top level or imports."""
    names = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _dotted_exists(name: str) -> bool:
    """A dotted oreal_mega name: the longest prefix that is a module, then (if more follows) a name it defines."""
    parts = name.split(".")
    for end in range(len(parts), 1, -1):
        module = _module_file(parts[:end])
        if module is not None:
            return (end == len(parts) or module.suffix == ".so" or parts[end] in _names(module)
                    or (module.parent / parts[end]).is_dir())
    return False


def test_every_path_and_name_in_the_docs_exists():
    missing, markdown_names = [], {p.name for p in _files("*.md")}
    for source, number, line in _texts():
        paths = [t.rstrip(".,;:") for t in PATH.findall(line)]
        links = [t for t in LINK.findall(line) if "://" not in t and not t.startswith("mailto:")]
        missing += [f"{source.relative_to(ROOT)}:{number}: {token}" for token in paths + links
                    if not PLACEHOLDER.search(token)
                    and not (_exists(token, source) if token in paths else (source.parent / token).exists())]
        missing += [f"{source.relative_to(ROOT)}:{number}: {name}" for name in DOTTED.findall(line)
                    if not _dotted_exists(name)]
        missing += [f"{source.relative_to(ROOT)}:{number}: {name}" for name in MARKDOWN_NAME.findall(line)
                    if name not in markdown_names]
    assert not missing, "references to paths or names that do not exist:\n" + "\n".join(missing)


def test_the_checker_finds_a_missing_path_and_name():
    """The scan itself: made-up paths, names and links are reported; real ones are not."""
    doc = ROOT / "README.md"
    assert not _exists("oreal_mega/trainer/models.py", doc) and _exists("oreal_mega/trainer/learner.py", doc)
    assert _exists("trainer/learner.py", doc) and not _exists("trainer/nothing.py", doc)
    assert _exists("tests/test_cli.py::test_help_lists_every_command_with_its_summary", doc)
    assert not _exists("tests/test_cli.py::test_nothing", doc)
    assert _exists("tests/test_kernels*.py", doc) and not _exists("tests/test_nothing*.py", doc)
    assert not _exists("../shared/docs/notes.md", doc) and _exists("runs/demo/logs/rl.log", doc)
    assert _dotted_exists("oreal_mega.kernels.fused_oreal_loss") and _dotted_exists("oreal_mega.testing.faults")
    assert not _dotted_exists("oreal_mega.trainer.models") and not _dotted_exists("oreal_mega.objective.nothing")
    assert LINK.findall("see [the notes](docs/notes.md#top)") == ["docs/notes.md"]
    assert MARKDOWN_NAME.findall("per MEMORY.md and examples/x.md") == ["MEMORY.md"]
    assert _python_prose('"""doc oreal_mega/a.py"""\nx = "data/b.py"  # c.py\n') == [
        (1, '"""doc oreal_mega/a.py"""'), (2, "# c.py")]
