"""Differential execution of code answers: do two answers' functions behave alike on each other's examples?

Code-writing prompts ("write a function that ...") carry no tests, but answers usually show one: a function and
an example that calls it (``print(f([1, 2]))  # [2, 1]``). Two independent answers whose functions give the same
output on *each other's* examples agree in behaviour, which is much stronger evidence than similar text; an
answer whose function disagrees with another's on the other's example, or whose own example fails, is usually
wrong. Measured on the dev workload's MBPP prompts: sovereign-large's answer is right 73% of the time when every
other answer's function reproduces its example output, 20% when none does (frontier: 69% overall).

Execution is sandboxed like :mod:`sovrouter.routing.execute`: a static screen (``ast``: no dunder names or
attributes, none of the builtins that reach the file system, the interpreter or introspection, imports only
from a short list of pure standard-library modules), then a separate isolated interpreter (``python -I -S``)
with CPU-time, memory, file-size and process limits, a wall-clock timeout, an empty environment and a
temporary working directory. Anything that fails the screen, crashes or times out is "no evidence".
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from sovrouter.routing.execute import MAX_CODE_CHARS, parse_quietly, safe_tree

_CODE_BLOCK = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_DENY = frozenset({
    "open", "exec", "eval", "compile", "input", "__import__", "globals", "locals", "vars", "getattr", "setattr",
    "delattr", "breakpoint", "exit", "quit", "help", "memoryview", "dir", "type", "os", "sys", "subprocess",
})
MODULES = frozenset({"math", "re", "collections", "itertools", "functools", "heapq", "string", "bisect", "operator",
                     "statistics", "fractions", "decimal", "typing", "copy", "cmath", "array", "datetime"})
_BUILTINS = (
    "abs", "all", "any", "bin", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "format",
    "frozenset", "hex", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next",
    "oct", "ord", "pow", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple",
    "zip", "callable", "hash", "object", "super", "staticmethod", "classmethod", "property", "ValueError",
    "IndexError", "KeyError", "TypeError", "Exception", "StopIteration", "ZeroDivisionError", "AttributeError",
    "ArithmeticError", "RuntimeError", "NotImplementedError", "True", "False", "None",
)
CPU_S = 1.0  # CPU time per snippet: what bounds the work
# Wall clock per snippet, only a backstop: the snippets cannot sleep or wait (no time module, no I/O), so a run
# that is slow by the clock is a loaded machine. At 2 s (until 2026-11-28) a machine busy enough to slow a 1 s
# snippet twofold turned its evidence into "none", and replay's decisions with it; 5 s keeps them as on an idle
# machine up to a fivefold slowdown.
TIMEOUT_S = 5.0

_RUNNER = r"""
import builtins, io, json, resource, signal, sys
job = json.loads(sys.stdin.read())
codes = job["codes"]
resource.setrlimit(resource.RLIMIT_CPU, (len(codes) + 1, len(codes) + 1))
resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
allowed = frozenset(job["modules"])
real_import = builtins.__import__
def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level or name.split(".")[0] not in allowed:
        raise ImportError(name)
    return real_import(name, globals, locals, fromlist, level)
class OutOfTime(BaseException):
    pass
def out_of_time(signum, frame):
    raise OutOfTime()
signal.signal(signal.SIGVTALRM, out_of_time)
results = []
for code in codes:
    out = io.StringIO()
    def captured_print(*args, sep=" ", end="\n", _out=out, **_ignored):
        _out.write(sep.join(str(a) for a in args) + end)
    safe = {k: getattr(builtins, k) for k in job["builtins"] if hasattr(builtins, k)}
    safe.update(__import__=guarded_import, __build_class__=builtins.__build_class__, print=captured_print)
    signal.setitimer(signal.ITIMER_VIRTUAL, job["cpu_s"])
    try:
        exec(compile(code, "<answer>", "exec"), {"__builtins__": safe, "__name__": "__main__"})
        ok = True
    except BaseException:
        ok = False
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    results.append({"ok": ok, "out": out.getvalue()[:4000]})
sys.stdout.write(json.dumps(results))
"""

def screen(code: str) -> bool:
    """True when ``code`` passes the static safety screen (see the module docstring)."""
    if len(code) > MAX_CODE_CHARS:
        return False
    tree = parse_quietly(code)
    return tree is not None and safe_tree(tree, _DENY, MODULES)


def run(code: str, timeout_s: float = TIMEOUT_S) -> str | None:
    """What ``code`` prints, or ``None`` when it is unsafe, fails or times out."""
    return run_many([code], timeout_s)[0]


def run_many(codes: Sequence[str], timeout_s: float = TIMEOUT_S) -> list[str | None]:
    """:func:`run` for several snippets in one sandboxed interpreter (one process start instead of one each):
    every snippet gets fresh globals and its own CPU-time budget; unsafe ones are not sent at all."""
    results: list[str | None] = [None] * len(codes)
    todo = [i for i, code in enumerate(codes) if screen(code)]
    if not todo:
        return results
    job = json.dumps({"codes": [codes[i] for i in todo], "builtins": list(_BUILTINS), "modules": sorted(MODULES),
                      "cpu_s": CPU_S})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", _RUNNER], input=job, capture_output=True,
                                  text=True, timeout=timeout_s * len(todo), cwd=tmp, env={}, check=False)
        except (subprocess.TimeoutExpired, OSError):
            return results
    try:
        outputs = json.loads(proc.stdout)
    except ValueError:
        return results
    if not isinstance(outputs, list) or len(outputs) != len(todo):
        return results
    for i, out in zip(todo, outputs, strict=True):
        results[i] = str(out["out"]) if out.get("ok") else None
    return results


@dataclass
class CodeAnswer:
    """An answer's code split into definitions (imports, functions, classes) and its example script."""

    definitions: str
    function: str  # the first function defined: the one the answer was asked for
    example: str  # the top-level statements that are not definitions ("" when the answer shows no example)
    safe: bool = True  # passes the static screen; code that does not is never run and gives no evidence
    own_output: str | None = None  # what the example prints with the answer's own function
    ran: bool = False
    _borrowed: dict[str, str | None] = field(default_factory=dict, repr=False)

    def example_output(self) -> str | None:
        """The example's output with this answer's own definitions (run once)."""
        if not self.ran:
            self.own_output = run(self.own_program()) if self.example else None
            self.ran = True
        return self.own_output

    def own_program(self) -> str:
        return self.definitions + "\n" + self.example

    def program_with(self, other: CodeAnswer) -> str:
        """This answer's example with its function name bound to ``other``'s function."""
        return other.definitions + "\n" + f"{self.function} = {other.function}" + "\n" + self.example

    def output_with(self, other: CodeAnswer) -> str | None:
        """The example's output with ``other``'s function swapped in (memoised per other)."""
        key = other.definitions
        if key not in self._borrowed:
            self._borrowed[key] = run(self.program_with(other))
        return self._borrowed[key]

    def prefetch(self, other: CodeAnswer) -> None:
        """Run, in one sandbox process, whatever :func:`behaviour_agreement` of the two answers still needs."""
        jobs: list[tuple[str, CodeAnswer, CodeAnswer | None]] = []
        for host, guest in ((self, other), (other, self)):
            if host.example and not host.ran:
                jobs.append((host.own_program(), host, None))
            if host.example and guest.definitions not in host._borrowed:
                jobs.append((host.program_with(guest), host, guest))
        if not jobs:
            return
        for (_, owner, borrowed), out in zip(jobs, run_many([j[0] for j in jobs]), strict=True):
            if borrowed is None:
                owner.own_output, owner.ran = out, True
            else:
                owner._borrowed[borrowed.definitions] = out


def parse_code_answer(text: str) -> CodeAnswer | None:
    """The answer's fenced Python code as a :class:`CodeAnswer`, or ``None`` when it defines no function."""
    code = "\n".join(_CODE_BLOCK.findall(text))
    if not code or len(code) > MAX_CODE_CHARS:
        return None
    tree = parse_quietly(code)
    if not isinstance(tree, ast.Module):
        return None
    kinds = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    if not functions:
        return None
    definitions: list[ast.stmt] = [n for n in tree.body if isinstance(n, kinds)]
    example: list[ast.stmt] = [n for n in tree.body if not isinstance(n, kinds)]
    defs_src = ast.unparse(ast.Module(body=definitions, type_ignores=[]))
    example_src = ast.unparse(ast.Module(body=example, type_ignores=[])) if example else ""
    return CodeAnswer(definitions=defs_src, function=functions[0], example=example_src,
                      safe=screen(defs_src + "\n" + example_src))


def example_runs(answer: CodeAnswer | None) -> float:
    """1 when the answer's own example runs and prints, 0 when it fails, 0.5 when there is nothing to run."""
    if answer is None or not answer.example or not answer.safe:
        return 0.5
    out = answer.example_output()
    return 0.5 if out == "" else (1.0 if out is not None else 0.0)


def behaviour_agreement(a: CodeAnswer | None, b: CodeAnswer | None) -> float:
    """Share of the two examples (``b``'s with ``a``'s function and vice versa) whose output is unchanged when
    the other answer's function is swapped in; 0.5 when neither example gives evidence."""
    votes: list[bool] = []
    if a is None or b is None or not a.safe or not b.safe:
        return 0.5
    a.prefetch(b)
    for host, guest in ((a, b), (b, a)):
        own = host.example_output()
        if own:  # an example that runs and prints something
            votes.append(host.output_with(guest) == own)
    return sum(votes) / len(votes) if votes else 0.5
