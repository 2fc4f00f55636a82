"""verifier throughput (verdicts/s) on MATH-style responses, and a batch with pathological inputs.

Responses are generated here (seeded): reasoning text ending in a boxed answer, 16 rollouts per prompt as
in OREAL, answer kinds mixed roughly like the MATH test set, each pred an equivalent rewrite or a wrong
answer whose label the generator knows, so the bench also reports how often the verifier agrees.

`--labelled`: instead, recall and false passes on the labelled public-style solutions of `labelled_solutions.py`
for each `verifier.fallback` of the oreal backend and for the math-verify backend, then the two backends'
agreement on the same items and their verdicts/s through the same VerifierPool.
"""
import random
import time
from collections import Counter

from oreal_mega.bench.machine import print_header
from oreal_mega.verifier import math_verify_backend
from oreal_mega.verifier.backends import verify_function
from oreal_mega.verifier.caching import clear_caches
from oreal_mega.verifier.pool import VerifierPool
from oreal_mega.verifier.verdict import verify

ROLLOUTS_PER_PROMPT = 16
_FILLER = ("We first rewrite the condition as $a^2 + b^2 = c^2$ and note that $\\frac{a}{b}$ is in lowest terms. "
           "Substituting $x = 2t$ gives $4t^2 - 4t + 1 = 0$, so $(2t - 1)^2 = 0$. ")


def _integer(rng):
    n = rng.randint(-50, 2000) if rng.random() < 0.9 else rng.randint(10**4, 10**7)
    right = [str(n), f"{n}.0", f"x = {n}", f"{n:,}" if abs(n) >= 1000 else f"{{{n}}}"]
    return str(n), right, [str(n + rng.choice((-1, 1, 10))), str(-n if n else 1)]


def _fraction(rng):
    a, b = rng.randint(1, 40), rng.randint(2, 41)
    while b % a == 0 or a % b == 0:
        a, b = rng.randint(1, 40), rng.randint(2, 41)
    gold = f"\\frac{{{a}}}{{{b}}}"
    return gold, [gold, f"\\dfrac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\frac{{{2 * a}}}{{{2 * b}}}"], \
        [f"\\frac{{{b}}}{{{a}}}", f"\\frac{{{a + 1}}}{{{b}}}"]


def _radical(rng):
    a, b = rng.randint(2, 9), rng.choice((2, 3, 5, 6, 7))
    if rng.random() < 0.5:
        return f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"{a} \\sqrt{b}", f"\\sqrt{{{a * a * b}}}"], \
            [f"{a + 1}\\sqrt{{{b}}}", f"\\sqrt{{{a * b}}}"]
    b += b == a  # a == b would make the "wrong" b/a rewrite equal
    return f"\\frac{{{a}\\pi}}{{{b}}}", [f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi", f"{a}\\pi/{b}"], \
        [f"\\frac{{{b}\\pi}}{{{a}}}", f"{a}\\pi"]


def _interval_or_tuple(rng):
    a, b = sorted(rng.sample(range(-20, 20), 2))
    if rng.random() < 0.5:
        return f"({a}, {b})", [f"({a},{b})", f"\\left({a}, {b}\\right)"], [f"({b}, {a})", f"[{a}, {b}]"]
    return f"[{a}, {b})", [f"[{a},{b})", f"\\left[{a}, {b}\\right)"], [f"[{a}, {b}]", f"({a}, {b})"]


def _expression(rng):
    p, q = rng.randint(1, 9), rng.randint(1, 9)
    gold = f"x^2 + {p + q}x + {p * q}"
    return gold, [gold, f"(x+{p})(x+{q})", f"{p * q} + {p + q}x + x^2"], [f"(x+{p})(x-{q})", f"x^2 + {p * q}x"]


def _choice_or_text(rng):
    letter = rng.choice("ABCDE")
    return f"\\text{{({letter})}}", [letter, f"({letter})", f"\\textbf{{({letter})}}"], \
        [rng.choice([c for c in "ABCDE" if c != letter])]


def _decimal(rng):
    value = rng.randint(1, 9999) / 100
    return f"{value}", [f"{value}", f"{value:.3f}"], [f"{value + 0.1:.2f}"]


_KINDS = [(_integer, 0.55), (_fraction, 0.15), (_radical, 0.12), (_interval_or_tuple, 0.06),
          (_expression, 0.05), (_choice_or_text, 0.04), (_decimal, 0.03)]


def make_batch(size: int, seed: int, rollouts_per_prompt: int = ROLLOUTS_PER_PROMPT):
    """(responses, golds, finished, expected statuses) for `size` MATH-style rollouts."""
    rng = random.Random(seed)
    responses, golds, finished, expected = [], [], [], []
    while len(responses) < size:
        kind = rng.choices([k for k, _ in _KINDS], weights=[w for _, w in _KINDS])[0]
        gold, right, wrong = kind(rng)
        for _ in range(rollouts_per_prompt):
            reasoning = _FILLER * rng.randint(3, 10)
            roll = rng.random()
            if roll < 0.04:
                responses.append(reasoning + "I am not sure of the final answer.")
                status = "no_answer"
            elif roll < 0.07:
                responses.append(reasoning + "Continuing the computation, $\\boxed{" + rng.choice(right))
                status = "truncated"
            else:
                correct = rng.random() < 0.5
                pred = rng.choice(right if correct else wrong)
                think = "<think>" + reasoning + "</think>" if rng.random() < 0.5 else reasoning
                responses.append(f"{think}Therefore the answer is $\\boxed{{{pred}}}$.")
                status = "correct" if correct else "wrong"
            golds.append(gold)
            finished.append(status != "truncated")
            expected.append(status)
    return responses[:size], golds[:size], finished[:size], expected[:size]


def pathological_items() -> dict[str, str]:
    return {
        "power tower 9^{9^{9^{9}}}": "\\boxed{9^{9^{9^{9}}}}",
        "100 kB expression": "\\boxed{" + "+".join(f"x_{{{i}}}^{{{i % 7}}}" for i in range(12_000))[:100_000] + "}",
        "braces nested 20,000 deep": "\\boxed{" + "{" * 20_000 + "1" + "}" * 20_000 + "}",
        "unbalanced LaTeX (box never closes)": "\\boxed{\\frac{1}{2" + "\\left(" * 500 + "}",
        "unbalanced LaTeX (inside a closed box)": "\\boxed{\\frac{1}{2\\right)" + "\\left[" * 500 + "}}",
        "factorial 10^6": "\\boxed{1000000!}",
    }


def verify_with_cold_caches(response: str, gold: str, *, finished: bool = True):
    """verify() with every cache emptied first: the rate when nothing was seen before (a worker's per-item
    function, so module level for spawn)."""
    clear_caches()
    return verify(response, gold, finished=finished)


def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=20_000, help="responses in the timed batch (default 20000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-response timeout in seconds (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labelled", action="store_true",
                        help="recall / false passes per fallback and backend on labelled public-style solutions, and "
                             "oreal vs math-verify agreement and verdicts/s (--size solutions per style)")


def _report(name: str, verdicts, expected, elapsed: float) -> None:
    agree = sum(v.status == e for v, e in zip(verdicts, expected))
    counts = Counter(v.status for v in verdicts)
    print(f"{name}: {len(verdicts)} responses in {elapsed:.2f} s = {len(verdicts) / elapsed:,.0f} verdicts/s; "
          f"agrees with generator labels on {agree}/{len(verdicts)}; {dict(counts)}")


def run(args) -> int:
    print_header()
    print(f"options: --size {args.size} --workers {args.workers} --timeout {args.timeout:g} --seed {args.seed}"
          + (" --labelled" if getattr(args, "labelled", False) else ""))
    if getattr(args, "labelled", False):
        return _labelled(args)
    sample = min(2_000, args.size)
    for rollouts, caches, verify_fn in ((1, "every gold new", verify), (ROLLOUTS_PER_PROMPT, "warm caches", verify),
                                        (ROLLOUTS_PER_PROMPT, "caches cleared per item", verify_with_cold_caches)):
        responses, golds, finished, expected = make_batch(sample, args.seed + 10 + rollouts, rollouts)
        started = time.perf_counter()
        verdicts = [verify_fn(r, g, finished=f) for r, g, f in zip(responses, golds, finished)]
        _report(f"in-process verify, 1 core, {rollouts} rollout(s)/prompt ({caches})", verdicts, expected,
                time.perf_counter() - started)
    _pool_rates(args, "warm caches", verify)
    _pool_rates(args, "caches cleared per item", verify_with_cold_caches)
    _pathological_batch(args)
    return 0


def _pool_rates(args, caches: str, verify_fn) -> None:
    with VerifierPool(args.workers, args.timeout, verify_fn=verify_fn) as pool:
        warm = make_batch(256, args.seed + 1)
        started = time.perf_counter()
        pool.verify_batch(warm[0], warm[1], warm[2])
        print(f"pool start-up + warm-up batch of 256 ({caches}): {time.perf_counter() - started:.2f} s")
        for rollouts in (ROLLOUTS_PER_PROMPT, 1):
            responses, golds, finished, expected = make_batch(args.size, args.seed + rollouts, rollouts)
            started = time.perf_counter()
            verdicts = pool.verify_batch(responses, golds, finished)
            _report(f"VerifierPool({args.workers} workers, {caches}), {rollouts} rollout(s)/prompt", verdicts,
                    expected, time.perf_counter() - started)


def _pathological_batch(args) -> None:
    with VerifierPool(args.workers, args.timeout) as pool:
        bad = pathological_items()
        normal = make_batch(200, args.seed + 2)
        batch_responses = list(bad.values()) + normal[0]
        batch_golds = ["1"] * len(bad) + normal[1]
        started = time.perf_counter()
        verdicts = pool.verify_batch(batch_responses, batch_golds, [True] * len(bad) + normal[2])
        elapsed = time.perf_counter() - started
        print(f"pathological batch ({len(bad)} pathological + {len(normal[0])} normal): {elapsed:.2f} s "
              f"(timeout {args.timeout:g} s per item)")
        for name, verdict in zip(bad, verdicts):
            print(f"  {name}: {verdict.status}{' (' + verdict.message + ')' if verdict.message else ''}")
        normal_agree = sum(v.status == e for v, e in zip(verdicts[len(bad):], normal[3]))
        print(f"  normal items agreeing with their labels: {normal_agree}/{len(normal[0])}")
        print(f"  pool counters: {pool.counters()}")


def _labelled(args) -> int:
    """Recall (correct pairs accepted) and false passes (wrong pairs accepted) per style, then agreement."""
    from oreal_mega.bench.labelled_solutions import labelled_set
    items = labelled_set(args.size, args.seed)
    settings = [("oreal, fallback none", verify_function("oreal", "none")),
                ("oreal, fallback last_number", verify_function("oreal", "last_number"))]
    if math_verify_backend.available():
        settings.append(("math-verify 0.9 (verl call)", verify_function("math-verify", "none")))
    else:
        print(f"math-verify is not installed: its columns are left out ({math_verify_backend.INSTALL_HINT})")
    verdicts = {}
    for name, verify_fn in settings:
        with VerifierPool(args.workers, args.timeout, verify_fn=verify_fn) as pool:
            pool.verify_batch(["\\boxed{1}"] * 8, ["1"] * 8)  # worker start-up is not timed
            started = time.perf_counter()
            verdicts[name] = pool.verify_batch([item.response for item in items], [item.gold for item in items])
            rate = len(items) / (time.perf_counter() - started)
        print(f"{name}: {len(items)} items through VerifierPool({args.workers} workers) at {rate:,.0f} verdicts/s; "
              f"{dict(Counter(v.status for v in verdicts[name]))}")
    styles = list(dict.fromkeys(item.style for item in items))
    columns = " | ".join(f"{name}: recall / false pass" for name in verdicts)
    print(f"\n| style | pairs (right / wrong) | {columns} |")
    print("| --- | --- |" + " --- |" * len(verdicts))
    for style in [*styles, "all"]:
        chosen = [i for i, item in enumerate(items) if style in ("all", item.style)]
        right = [i for i in chosen if items[i].correct]
        wrong = [i for i in chosen if not items[i].correct]
        cells = []
        for name in verdicts:
            recall = sum(verdicts[name][i].correct for i in right) / len(right) if right else None
            false_pass = sum(verdicts[name][i].correct for i in wrong) / len(wrong) if wrong else None
            cells.append(" / ".join("–" if rate is None else f"{100 * rate:.1f}%" for rate in (recall, false_pass)))
        print(f"| {style} | {len(right)} / {len(wrong)} | " + " | ".join(cells) + " |")
    if len(verdicts) == 3:
        _agreement(items, styles, *verdicts.values())
    return 0


def _agreement(items, styles, oreal_verdicts, _, math_verify_verdicts) -> None:
    """How often the oreal backend (fallback none) and math-verify give the same reward, per style."""
    print("\n| style | items | same reward | oreal only correct | math-verify only correct |")
    print("| --- | --- | --- | --- | --- |")
    for style in [*styles, "all"]:
        chosen = [i for i, item in enumerate(items) if style in ("all", item.style)]
        pairs = [(oreal_verdicts[i].correct, math_verify_verdicts[i].correct) for i in chosen]
        same = sum(a == b for a, b in pairs)
        print(f"| {style} | {len(chosen)} | {same} ({100 * same / len(chosen):.1f}%) | "
              f"{sum(a and not b for a, b in pairs)} | {sum(b and not a for a, b in pairs)} |")
