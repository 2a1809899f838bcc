"""Execute what can be executed safely: "what does this code return?" questions, as an answer check.

A prompt that shows a Python snippet and asks for the value of an expression (an ``assert <expr> == ??`` line,
the common form of output-prediction questions) can be checked by running the snippet. The run is sandboxed:

- static screen first (``ast``): no imports, no dunder names or attributes, none of the builtins that reach the
  file system, the interpreter or introspection (``open``, ``exec``, ``eval``, ``getattr``, ...);
- then a separate, isolated interpreter (``python -I -S``) with CPU-time, memory, file-size and process
  limits, a wall-clock timeout, an empty environment, a temporary working directory and only a short list of
  pure builtins; the result comes back as ``repr`` text on stdout.

Anything that does not pass the screen, fails, or times out yields ``None`` (no evidence, never an error).
The router only uses the result to *check* a model's answer; it never serves the executed value itself.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import warnings

_BLOCK = re.compile(r"\[PYTHON\]\s*\n(.*?)\[/PYTHON\]|```(?:python|py)\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ASK = re.compile(r"^\s*assert\s+(.+?)\s*==\s*\?\?\s*$", re.MULTILINE)
_DENY = frozenset({
    "open", "exec", "eval", "compile", "input", "__import__", "globals", "locals", "vars", "getattr", "setattr",
    "delattr", "breakpoint", "exit", "quit", "help", "memoryview", "object", "super", "dir", "id", "hash",
    "classmethod", "staticmethod", "property", "type",
})
MAX_CODE_CHARS = 4000

_RUNNER = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_CPU, (2, 2))
resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
job = json.loads(sys.stdin.read())
import builtins
safe = {k: getattr(builtins, k) for k in job["builtins"] if hasattr(builtins, k)}
scope = {"__builtins__": safe, "__name__": "snippet"}
exec(compile(job["code"], "<snippet>", "exec"), scope)
sys.stdout.write(repr(eval(compile(job["expr"], "<expr>", "eval"), scope)))
"""

_SAFE_BUILTINS = (
    "abs", "all", "any", "bin", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "format",
    "frozenset", "hex", "int", "isinstance", "iter", "len", "list", "map", "max", "min", "next", "oct", "ord",
    "pow", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ValueError", "IndexError", "KeyError", "TypeError", "Exception", "StopIteration", "ZeroDivisionError",
    "AttributeError", "True", "False", "None", "print",
)


def find_question(text: str) -> tuple[str, str] | None:
    """(snippet without the question line, expression asked for), or ``None``."""
    for m in _BLOCK.finditer(text):
        body = m.group(1) or m.group(2) or ""
        ask = _ASK.search(body)
        if ask is None:
            continue
        code = (body[: ask.start()] + body[ask.end() :]).strip("\n")
        return code, ask.group(1)
    return None


def parse_quietly(source: str, mode: str = "exec") -> ast.AST | None:
    """``ast.parse`` without SyntaxWarnings; ``None`` when ``source`` does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.parse(source, mode=mode)
    except (SyntaxError, ValueError):
        return None


def safe_tree(tree: ast.AST, deny: frozenset[str], modules: frozenset[str] = frozenset()) -> bool:
    """The static screen shared by the sandboxes: no imports except top-level ones from ``modules``, no global /
    nonlocal / async / with, no name in ``deny`` or starting with ``__``, no attribute starting with ``_``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] not in modules for a in node.names):
            return False
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] not in modules):
            return False
        if isinstance(node, ast.Global | ast.Nonlocal | ast.AsyncFunctionDef | ast.Await | ast.With |
                      ast.AsyncWith):
            return False
        if isinstance(node, ast.Name) and (node.id in deny or node.id.startswith("__")):
            return False
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            return False
    return True


def screen(code: str, expr: str) -> bool:
    """True when the snippet passes the static safety screen (no imports at all)."""
    if len(code) > MAX_CODE_CHARS:
        return False
    trees = [parse_quietly(code, "exec"), parse_quietly(expr, "eval")]
    return all(t is not None and safe_tree(t, _DENY) for t in trees)


def run_question(text: str, timeout_s: float = 10.0) -> str | None:
    """``repr`` of the asked expression's value, or ``None`` (no question, unsafe, failed, or timed out). The run is
    bounded by its 2 s of CPU time; ``timeout_s`` is only a backstop for a loaded machine (the snippet cannot
    sleep or wait): at 3 s (until 2026-11-28) load alone could turn an answer check into "no evidence"."""
    found = find_question(text)
    if found is None or not screen(*found):
        return None
    job = json.dumps({"code": found[0], "expr": found[1], "builtins": list(_SAFE_BUILTINS)})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", _RUNNER], input=job, capture_output=True,
                                  text=True, timeout=timeout_s, cwd=tmp, env={}, check=False)
        except (subprocess.TimeoutExpired, OSError):
            return None
    if proc.returncode != 0 or not proc.stdout or len(proc.stdout) > 10_000:
        return None
    return proc.stdout


def _literal(text: str) -> tuple[bool, object]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def _digest(kind: str, text: str) -> str:
    return hashlib.sha256(f"{kind}:{text}".encode("utf-8", "replace")).hexdigest()


def _printed(text: str) -> str:
    """Printed form with the quote style folded (``'a'`` and ``"a"`` print the same string)."""
    return text.strip().replace('"', "'")


def answer_key(value: str | None) -> str | None:
    """A digest of an executed value (its ``repr`` text): a string by its exact content, anything else by how
    Python prints it, quote style aside.

    Signals carry this digest rather than the executed value, so no prompt-derived text reaches the records."""
    if value is None:
        return None
    ok, literal = _literal(value.strip())
    if ok and isinstance(literal, str):
        return _digest("s", literal)
    return _digest("r", _printed(value))


def stated_keys(answer: str | None) -> frozenset[str]:
    """The digests a stated answer can match: the text itself as a string, its quoted string literal, or the
    text as a printed value.

    Deliberately as strict as an output-prediction grader: a string must be stated exactly (leading and
    trailing spaces count) and any other value exactly as Python prints it (``[ -5, 3]`` is not how Python
    prints ``[-5, 3]``, and a dict's key order is part of its printed form)."""
    if answer is None:
        return frozenset()
    keys = {_digest("s", answer), _digest("r", _printed(answer))}
    ok, literal = _literal(answer.strip())
    if ok and isinstance(literal, str):
        keys.add(_digest("s", literal))
    return frozenset(keys)


def matches(answer: str | None, executed: str | None) -> bool:
    """Whether a model's stated answer is the executed value (see :func:`stated_keys`)."""
    key = answer_key(executed)
    return key is not None and key in stated_keys(answer)
