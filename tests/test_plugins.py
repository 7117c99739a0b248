"""cascade reaches analysis only through entry points: dependencies point one way."""
import ast
from pathlib import Path

from cascade.plugins import BENCH, CALLBACKS, COMMANDS, configured_callbacks, plugins

CASCADE = Path(__file__).resolve().parents[1] / "cascade"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def test_cascade_never_imports_analysis():
    offenders = {str(p.relative_to(CASCADE.parent)): sorted(m for m in _imported_modules(p)
                                                           if m == "analysis" or m.startswith("analysis."))
                 for p in CASCADE.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_analysis_plugs_into_cli_bench_and_trainer():
    assert "analysis" in plugins(COMMANDS) and "analysis" in plugins(BENCH) and "drift" in plugins(CALLBACKS)
    from cascade.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"cka", "sigma-sweep", "train", "bench"} <= set(sub.choices)


def test_configured_callbacks_follow_the_config():
    from cascade.run_config import validate_run_config

    off = validate_run_config({})
    on = validate_run_config({"train": {"drift": {"every_k_steps": 5}}})
    assert configured_callbacks(off) == []
    assert [type(cb).__name__ for cb in configured_callbacks(on)] == ["ConfiguredDriftMonitor"]
