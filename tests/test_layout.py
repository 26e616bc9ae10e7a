"""The package's rooms import only rooms listed above them, and no module imports itself in a circle."""

import ast
import pathlib

import keras_mobilenets

ROOMS = ("nets", "analysis", "data", "train", "optimize", "deploy", "app")
BASE = ("fileio", "version", "_startup", "extras")  # every room may use these; they import no room
PACKAGE = pathlib.Path(keras_mobilenets.__file__).parent


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("keras_mobilenets",) + parts), path


def _imports(path, module):
    """Every keras_mobilenets module `path` imports, at module level or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
            found += [(base, node)] + [(f"{base}.{alias.name}", node) for alias in node.names]
    return [(name, node) for name, node in found if name.startswith("keras_mobilenets")]


def _room(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_rooms_import_only_rooms_above_them():
    known = {name for name, _ in _modules()}
    wrong = []
    for module, path in _modules():
        room = _room(module)
        if room not in ROOMS and room not in BASE:
            continue  # the package's __init__ and old-path aliases may import anything
        allowed = set(ROOMS[: ROOMS.index(room) + 1]) if room in ROOMS else set()
        for name, node in _imports(path, module):
            if name not in known:
                continue  # `from keras_mobilenets.x import function`: the module itself is checked
            if name == "keras_mobilenets" and isinstance(node, ast.ImportFrom) and all(
                    f"keras_mobilenets.{alias.name}" in known for alias in node.names):
                continue  # `from keras_mobilenets import optimize`: the room itself is checked
            target = _room(name)
            if target is None or (target not in allowed and target not in BASE):
                wrong.append(f"{module}:{node.lineno} imports {name}")
    assert not wrong, "imports against the room order " + " > ".join(ROOMS) + ":\n" + "\n".join(wrong)


def test_no_circular_module_imports():
    known = dict(_modules())
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        graph[module] = {name for name, node in _imports(path, module)
                         if name in known and name != module and id(node) in top_level}
    cycles, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(graph[module]):
            if target.startswith(module + "."):
                continue  # a package importing its own submodule is not a cycle
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "circular imports:\n" + "\n".join(cycles)


def test_the_check_sees_a_wrong_import(tmp_path):
    """The walker finds imports inside functions too (a lower room's lazy import of a higher one)."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from keras_mobilenets.app import runs\n")
    assert [name for name, _ in _imports(source, "keras_mobilenets.nets.probe")][0] == "keras_mobilenets.app"


def test_public_builders_document_and_annotate_every_argument():
    import inspect

    import keras_mobilenets as km

    for builder in (km.create_model, km.MobileNetV1, km.MobileNetV2, km.MobileNetV3Large, km.MobileNetV3Small):
        signature = inspect.signature(builder)
        undocumented = [p for p in signature.parameters if f"\n    {p}: " not in builder.__doc__]
        assert not undocumented, f"{builder.__name__} has no Args: entry for {undocumented}"
        unannotated = [p.name for p in signature.parameters.values()
                       if p.annotation is inspect.Parameter.empty and p.name not in ("input_tensor", "classifier_activation")]
        assert not unannotated, f"{builder.__name__} lacks type hints for {unannotated}"


def test_old_import_paths_still_work():
    """The import lines users typed before the rooms keep working: each old path is the new module."""
    import importlib

    from keras_mobilenets import optimize
    from keras_mobilenets.app import cli, runs
    from keras_mobilenets.analysis import papers
    from keras_mobilenets.data import datasets
    from keras_mobilenets.deploy import serving, tflite
    from keras_mobilenets.train import recipe

    moved = {"training": recipe, "runs": runs, "cli": cli, "quantization": optimize, "tflite": tflite,
             "papers": papers, "datasets": datasets, "export": serving}
    for old, new in moved.items():
        assert importlib.import_module(f"keras_mobilenets.{old}") is new, old
    from keras_mobilenets.training import Recipe  # noqa: F401
    from keras_mobilenets.quantization import quantize_model  # noqa: F401
    from keras_mobilenets import data as kd

    assert kd.from_folder is importlib.import_module("keras_mobilenets.data.pipelines").from_folder


def test_the_networks_need_no_extra_and_a_missing_extra_names_its_pip_line(tmp_path):
    """`pip install keras-mobilenets` (no extra) builds and profiles networks; what needs an extra says which."""
    import subprocess
    import sys

    script = """
import sys
for name in ("PIL", "sklearn", "matplotlib", "tensorflow_datasets", "ai_edge_litert", "tf_keras",
             "tensorflow_model_optimization"):
    sys.modules[name] = None  # as if not installed
import keras_mobilenets as km
model = km.MobileNetV3Small(weights=None, input_shape=(64, 64, 3), classes=3)
assert km.profile(model).params > 0
for call, extra in ((lambda: km.datasets.digits(sys.argv[1]), "train"),
                    (lambda: km.create_model("v2", alpha=0.35, flavor="tf_keras"), "optimize"),
                    (lambda: __import__("keras_mobilenets.optimize").optimize.quantize_model(model), "optimize"),
                    (lambda: __import__("keras_mobilenets.deploy.tflite").deploy.tflite.run_tflite(b"", []), "deploy")):
    try:
        call()
    except ImportError as error:
        assert f"pip install 'keras-mobilenets[{extra}]'" in str(error), error
    else:
        raise AssertionError(f"no ImportError for [{extra}]")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "digits")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_cli_choices_are_the_modules_constants():
    from keras_mobilenets.app import cli
    from keras_mobilenets.deploy import tflite
    from keras_mobilenets.nets import models

    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps subcommands only here
    by_flag = {(name, flag): action for name, sub in commands.items() for action in sub._actions  # (no public list either)
               for flag in action.option_strings}
    assert tuple(by_flag["train", "--arch"].choices) == models.ARCH_NAMES
    assert tuple(by_flag["convert", "--mode"].choices) == tflite.MODES == tuple(cli.CONVERT_MODES)
    assert tuple(by_flag["quantize", "--input-type"].choices) == tflite.IO_TYPES
