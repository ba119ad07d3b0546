"""Every module's docstring lists exactly what the module offers, and the package's
docstring lists exactly its modules."""

import ast
import re

from conftest import ROOT

SCRIPTS = ["cnn_data", "cnn_model", "cnn_run", "cnn_eval"]  # cnn_params holds values only


def modules():
    return [ROOT / f"{name}.py" for name in SCRIPTS] + sorted(
        p for p in (ROOT / "cnnlib").glob("*.py") if p.name != "__init__.py")


def public_names(tree):
    """Functions and classes a module defines at top level, not starting with "_"."""
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and not node.name.startswith("_")}


def known_names(tree):
    """Everything a module's top level defines or imports."""
    names = set(public_names(tree))
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If):  # `if __name__ == "__main__":` imports
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in inner.names}
    return names


def test_each_docstring_lists_exactly_the_public_functions():
    problems = []
    for path in modules():
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree) or ""
        words = set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b", doc))
        missing = sorted(public_names(tree) - words)
        called = set(re.findall(r"(?<![.\w])([a-z_][a-z0-9_]*)\(", doc))
        unknown = sorted(called - known_names(tree))
        if missing:
            problems.append(f"{path.name}: docstring does not list {missing}")
        if unknown:
            problems.append(f"{path.name}: docstring offers {unknown}, not in the module")
    assert not problems, "\n".join(problems)


def test_the_package_docstring_lists_exactly_its_modules():
    doc = ast.get_docstring(ast.parse((ROOT / "cnnlib" / "__init__.py").read_text()))
    listed = set(re.findall(r"^  (\w+) ", doc, re.M))
    present = {p.stem for p in (ROOT / "cnnlib").glob("*.py") if p.name != "__init__.py"}
    assert listed == present, (sorted(listed - present), sorted(present - listed))
