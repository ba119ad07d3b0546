"""The code's shape: the report's five scripts on top, one package below, imports one way,
and a quiet start."""

import ast
import os
import subprocess
import sys

import pytest

import cnn_params

from conftest import ROOT, make_class_folders

SCRIPTS = ["cnn_params", "cnn_data", "cnn_model", "cnn_run", "cnn_eval"]
# The data flows one way: a script may import only those before it in this order.
ORDER = {name: index for index, name in enumerate(SCRIPTS)}
DRIVERS = {"cnn_run", "cnn_eval"}


def module_name(path):
    relative = path.relative_to(ROOT).with_suffix("")
    return ".".join(relative.parts).removesuffix(".__init__")


def project_imports(path):
    """Return {imported project module} of a file, leaving out `if __name__ == "__main__"`."""
    tree = ast.parse(path.read_text())
    entry_points = {id(node) for top in tree.body if isinstance(top, ast.If)
                    and "__main__" in ast.dump(top.test) for node in ast.walk(top)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in entry_points:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in {"cnnlib", *SCRIPTS}}
    return found


def code_files():
    return sorted([*ROOT.glob("cnn_*.py"), *(ROOT / "cnnlib").glob("*.py")])


def test_the_top_level_holds_the_five_scripts_and_one_package():
    assert sorted(p.stem for p in ROOT.glob("*.py")) == sorted(SCRIPTS)
    assert (ROOT / "cnnlib" / "__init__.py").is_file()


def test_imports_flow_one_way_with_no_cycle():
    graph = {}
    for path in code_files():
        name = module_name(path)
        imports = project_imports(path)
        graph[name] = {i for i in imports if i in {module_name(p) for p in code_files()}}
        scripts = {i.split(".")[0] for i in imports} & set(SCRIPTS)
        if name.startswith("cnnlib"):
            assert not scripts, f"{name} imports the script(s) {scripts}"
        else:
            later = {s for s in scripts if ORDER[s] >= ORDER[name]}
            assert not later, f"{name} imports {later}, which come after it"
            assert not (scripts & DRIVERS), f"{name} imports a driver"
    assert graph["cnn_run"] >= {"cnn_data", "cnn_model"}  # the parser sees imports at all

    def visit(node, trail):
        assert node not in trail, f"import cycle: {' -> '.join([*trail, node])}"
        for target in graph.get(node, ()):
            visit(target, [*trail, node])

    for node in graph:
        visit(node, [])


@pytest.mark.slow
def test_a_training_run_starts_quietly(tmp_path):
    data = make_class_folders(tmp_path / "data")
    (data / "train" / cnn_params.CLASSES[0] / "broken.png").write_bytes(b"not an image")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CNN_TF_LOGS")}
    done = subprocess.run(
        [sys.executable, "cnn_run.py", "--epochs=1", f"--data_dir={data}", "--image_size=32",
         f"--runs_dir={tmp_path / 'runs'}", f"--cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    noise = [line for line in lines if line.startswith(("I0000", "W0000", "E0000",
                                                        "WARNING: All log messages"))]
    assert noise == []
    assert any(line.startswith("Saved ") for line in lines)
    # The suite's own warning is one sentence: no source file, line or warning class.
    assert [line for line in done.stderr.splitlines() if "broken.png" in line] == [
        line for line in done.stderr.splitlines() if line.startswith("warning: Skipped")]
    assert "broken.png" in done.stderr and "UserWarning" not in done.stderr

    # CNN_TF_LOGS=1 brings TensorFlow's own lines back.
    loud = subprocess.run([sys.executable, "-c", "import cnnlib, tensorflow"], cwd=ROOT,
                          env={**env, "CNN_TF_LOGS": "1"}, capture_output=True, text=True,
                          timeout=120)
    assert "oneDNN" in loud.stderr or "I0000" in loud.stderr


def test_only_the_suites_own_warnings_are_one_line():
    from cnnlib import quiet
    from cnnlib.errors import SuiteWarning

    assert quiet._one_line("Skipped a.jpg", SuiteWarning, str(ROOT / "cnn_data.py"), 7) == (
        "warning: Skipped a.jpg\n")
    # Another library's warning, even raised at the suite's line, keeps its category.
    other = quiet._one_line("invalid value", RuntimeWarning, str(ROOT / "cnn_data.py"), 7)
    assert "RuntimeWarning: invalid value" in other and "cnn_data.py:7" in other
