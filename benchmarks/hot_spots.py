"""Where a sampled process spent its time: the top functions of a collapsed-stack profile.

``py-spy record --format raw`` writes one line per distinct stack, outermost frame
first, and the number of samples that caught it: ``frame;frame;...;frame count``. A
frame is ``function (file:line)``. Two shares per function, of all samples:

- *inclusive*: samples in which the function is on the stack at all (counted once per
  sample, however often it recurs in that stack): the time in it and what it called.
  A *pass-through*, a function that never ran its own code and only ever called one
  other (``runpy``'s, a thread's bootstrap, a wrapper), is not ranked: the one it calls
  has its samples;
- *self*: samples in which it is the innermost frame: the time in its own code (a
  C function it calls, such as ``zlib.compress``, counts as its own time: py-spy shows
  Python frames only).

Functions are told apart by name and file, not line: every line of a function adds up.
A sample without a Python frame (a line of just a count: the interpreter starting,
native code) is self time of ``NO_FRAME``. Samples with a function named in ``without``
on the stack are left out of the shares and counted apart (``bench_e2e`` leaves out
imports: ``IMPORT``, a service's start-up and boto3's lazy loading, not its work).
``bench_e2e.py --profile`` prints these per stage.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import pairwise

_LINE = re.compile(r":\d+\)$")  # the ":line" of "function (file:line)"
NO_FRAME = "(no Python frame)"
IMPORT = "_find_and_load (<frozen importlib._bootstrap>)"


@dataclass(frozen=True)
class Share:
    function: str  # "function (file)"
    samples: int
    share: float  # of all samples


@dataclass(frozen=True)
class HotSpots:
    samples: int  # the shares' whole
    inclusive: list[Share]
    own: list[Share]  # self time
    left_out: int = 0  # samples with a function of ``without`` on the stack


def function_of(frame: str) -> str:
    """``f (a/b.py:12)`` -> ``f (a/b.py)``; a frame without a line is itself."""
    return _LINE.sub(")", frame.strip())


def parse(line: str) -> tuple[list[str], int]:
    """One collapsed line: its frames, outermost first (none, maybe), and its count."""
    stack, space, count = line.rstrip("\n").rpartition(" ")
    if not space or not count.isdigit():
        raise ValueError(f"not a collapsed stack line: {line!r}")
    return (stack.split(";") if stack else []), int(count)


def hot_spots(lines: Iterable[str], top: int = 8, without: Collection[str] = ()) -> HotSpots:
    """The ``top`` functions by inclusive and by self samples (most first, then by name),
    of the samples without a function of ``without`` on the stack."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    callees: dict[str, set[str]] = {}
    total = left_out = 0
    for line in lines:
        if not line.strip():
            continue
        frames, count = parse(line)
        functions = [function_of(f) for f in frames]
        if any(f in without for f in functions):
            left_out += count
            continue
        total += count
        for function in set(functions):
            inclusive[function] += count
        for caller, callee in pairwise(functions):
            callees.setdefault(caller, set()).add(callee)
        own[functions[-1] if functions else NO_FRAME] += count
    for function, called in callees.items():
        if len(called) == 1 and function not in own:  # a pass-through
            del inclusive[function]

    def ranked(counts: Counter[str]) -> list[Share]:
        order = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [Share(f, n, n / total) for f, n in order]

    return HotSpots(total, ranked(inclusive), ranked(own), left_out)
