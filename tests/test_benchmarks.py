"""Benchmarks have one home each way they are run: `scarce bench NAME` (package programs in `scarce.bench`) and
`python benchmarks/NAME.py` (scripts reproducing benchmarks/RESULTS.md); every one of them answers `--help`."""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

from scarce.cli import BENCHMARKS

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_scarce_bench_command_lives_in_scarce_bench_and_has_help(name, capsys):
    module_name, func = BENCHMARKS[name][0].split(":")
    assert module_name == f"scarce.bench.{name}", f"`scarce bench {name}` must live in scarce/bench/{name}.py"
    out = _help(getattr(importlib.import_module(module_name), func), capsys)
    assert f"usage: scarce bench {name}" in out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_script_is_documented_and_has_help(script, capsys):
    tree = ast.parse(script.read_text())
    doc = ast.get_docstring(tree)
    assert doc and f"benchmarks/{script.name}" in doc, f"{script.name}: the docstring must show how to run it"
    assert any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body), (
        f"{script.name}: needs `if __name__ == \"__main__\": sys.exit(main())`")
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ block does not run
    assert "usage:" in _help(module.main, capsys)
