"""services/core is pure logic: no Kafka, Redis or stream-framework imports.

The offline trainer, the backtest and the online scorer share it, so it must run
anywhere without a broker or a store. Checked on the AST, so an import inside a
function or under ``if TYPE_CHECKING`` counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import services

CORE = Path(services.__file__).resolve().parent / "core"
FORBIDDEN = ("confluent_kafka", "redis", "faust", "aiokafka", "kafka", "mode")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and _called_name(node) in ("import_module", "__import__"):
            if node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.lineno, str(node.args[0].value)))
    return found


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def is_forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return top in FORBIDDEN or module.startswith(("services.kafka", "services.online"))


def test_core_exists_and_has_modules() -> None:
    assert len(list(CORE.rglob("*.py"))) >= 5


def test_core_imports_no_kafka_redis_or_faust() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in imported_modules(tree):
            if is_forbidden(module):
                offenders.append(f"{path.relative_to(CORE.parent.parent)}:{line} imports {module}")
    assert not offenders, "services/core must stay pure:\n" + "\n".join(offenders)


def test_the_checker_catches_each_form() -> None:
    source = (
        "import confluent_kafka\nfrom redis.asyncio import Redis\nimport faust as f\n"
        "def g():\n    import aiokafka\n    importlib.import_module('redis')\n"
        "from services.kafka.config import admin\n"
    )
    modules = [m for _, m in imported_modules(ast.parse(source))]
    assert sorted(m for m in modules if is_forbidden(m)) == [
        "aiokafka", "confluent_kafka", "faust", "redis", "redis.asyncio", "services.kafka.config",
    ]  # fmt: skip
