"""The code's shape (issue 15): modules and functions stay small enough to read, and the run/train
layer calls method and regularizer hooks directly, never looks them up by name. Source is read as
text and parsed with ``ast``; nothing is imported but the two hook tables."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("benchmark", "methods", "regularizers", "tasks")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # from the ``def`` line to the last line of the body; decorators not counted


def _modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _functions(tree: ast.AST):
    """(qualified name, node) of every function and method, nested ones included."""

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child
                yield from walk(child, f"{name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def test_the_code_folders_hold_modules():
    # a wrong ROOT would make the size checks below pass on nothing
    for folder in CODE_FOLDERS:
        assert _modules(folder), f"no .py files under {folder}/"


def test_no_module_is_over_400_lines():
    too_long = []
    for path in _modules(*CODE_FOLDERS):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            too_long.append(f"{_rel(path)}: {n} lines")
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines:\n  " + "\n  ".join(too_long)


def test_no_function_is_over_60_lines():
    too_long = []
    for path in _modules(*CODE_FOLDERS):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _functions(tree):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                too_long.append(f"{_rel(path)}:{node.lineno} {name}: {n} lines")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(too_long)


def test_function_lengths_are_measured_from_the_def_line():
    tree = ast.parse("class A:\n    @staticmethod\n    def f():\n        def g():\n            pass\n        return 1\n")
    found = {name: node.end_lineno - node.lineno + 1 for name, node in _functions(tree)}
    assert found == {"A.f": 4, "A.f.g": 2}


# Names a getattr/hasattr on a method or regularizer would use: the objects' usual names ...
_HOOK_HOLDERS = {"method", "regularizer", "reg", "cls"}


def _hook_names() -> set[str]:
    """... and every member of the Method and Regularizer protocols (the optional hooks with them)."""
    from snap_bench.methods import base as method_base
    from snap_bench.regularizers import base as regularizer_base

    names = set(method_base.OPTIONAL_HOOKS) | set(regularizer_base.OPTIONAL_HOOKS)
    for protocol in (method_base.Method, regularizer_base.Regularizer):
        names |= {n for n in vars(protocol).get("__annotations__", {})}
        names |= {n for n, v in vars(protocol).items() if not n.startswith("_") and callable(getattr(v, "__func__", v))}
    return names


def _hook_lookups(src: str, hooks: set[str]) -> list[str]:
    """``getattr``/``hasattr`` calls in ``src`` on a method/regularizer, or for a hook's name."""
    found = []
    for node in ast.walk(ast.parse(src)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2):
            continue
        obj, attr = node.args[0], node.args[1]
        on_holder = isinstance(obj, ast.Name) and obj.id in _HOOK_HOLDERS
        for_hook = isinstance(attr, ast.Constant) and attr.value in hooks
        if on_holder or for_hook:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_hook_names_come_from_both_protocols():
    hooks = _hook_names()
    assert {"trains", "needs_reference", "trains_copy", "prepare", "finish", "system_prompt", "streams", "loss"} <= hooks
    assert {"active", "penalty", "from_config"} <= hooks


@pytest.mark.parametrize("src", ['getattr(method, "anything", None)', 'hasattr(reg, name)',
                                 'getattr(m, "trains", True)', 'getattr(self.method, "system_prompt")'])
def test_the_hook_lookup_check_bites(src):
    assert _hook_lookups(src, _hook_names())


def test_run_and_train_call_hooks_directly_not_through_getattr():
    """The Protocols declare every hook with a default that registration fills in; that is what lets
    callers skip getattr. A getattr/hasattr on a method or regularizer, or for a hook's name, anywhere
    in the run/train layer would mean a hook the Protocol does not declare."""
    hooks = _hook_names()
    offenders = []
    paths = _modules("benchmark/run", "benchmark/train")
    assert paths
    for path in paths:
        offenders += [f"{_rel(path)}:{hit}" for hit in _hook_lookups(path.read_text(encoding="utf-8"), hooks)]
    assert not offenders, "hooks looked up by name in run/train:\n  " + "\n  ".join(offenders)
