"""Real stack traces for the multiline presets: Python's raised here, the others recorded or
written in their runtime's shape (tests/data/traces/README.md), each in a log of ordinary
lines, as a tuple of the entries the preset must make of it."""

from __future__ import annotations

import functools
import io
import logging
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

TRACES = Path(__file__).parent.parent / "data" / "traces"


def recorded(name: str) -> str:
    """One entry of tests/data/traces: the file without its final newline."""
    text = (TRACES / name).read_text()
    assert text.endswith("\n")
    return text[:-1]


def raised(make: Callable[[], object]) -> str:
    """The traceback Python prints for what `make` raises, without the final newline."""
    try:
        make()
    except Exception:
        return traceback.format_exc()[:-1]
    raise AssertionError("expected an exception")


def chained() -> None:
    """A KeyError, a ValueError during its handling, a RuntimeError raised from that."""
    try:
        try:
            {}["sku-42"]
        except KeyError:
            int("forty-two")
    except ValueError as e:
        raise RuntimeError("order 42 failed") from e


def grouped() -> None:
    """An exception group holding a traceback and a nested group, as the cause of another."""
    def check(sku: str) -> None:
        raise ValueError(f"no stock for {sku}")
    errors: list[Exception] = []
    try:
        check("sku-1")
    except ValueError as e:
        errors.append(e)
    try:
        raise ExceptionGroup("checks failed", [*errors, ExceptionGroup("io", [OSError("disk")])])
    except ExceptionGroup as group:
        raise RuntimeError("order 42 failed") from group


def recurse(n: int) -> int:
    return recurse(n + 1) + 1  # RecursionError: Python prints 3 frames, then "[Previous line..."


def logged_exception() -> str:
    """What `log.exception("request failed")` writes with a usual format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.Logger("shop.orders")
    log.addHandler(handler)
    try:
        int("forty-two")
    except ValueError:
        log.exception("request failed")
    return stream.getvalue()[:-1]


def script_syntax_error(tmp: Path) -> str:
    """What Python prints when the script it runs does not compile: no Traceback header."""
    script = tmp / "orders.py"
    script.write_text("order = place(42,\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=False)
    return run.stderr[:-1]


@functools.cache
def python_log() -> tuple[str, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        syntax_error = script_syntax_error(Path(tmp))
    return (
        "2024-05-14 09:12:43,001 INFO shop.orders: order 41 placed",
        raised(chained),
        "2024-05-14 09:12:43,120 WARNING shop.orders: stock low for sku-42",  # no trace follows
        "",
        logged_exception(),
        "GET /healthz HTTP/1.1 200",
        raised(grouped),
        raised(lambda: compile("order = place(42,\n", "orders.py", "exec")),
        raised(lambda: recurse(0)),
        "  indented, yet no trace",
        syntax_error,
        "bye",
    )


def java_log() -> tuple[str, ...]:
    return (
        "2024-05-14T09:12:43.001Z  INFO 1 --- [shop] [main] c.e.shop.ShopApplication : Started",
        recorded("java_spring_boot.log"),
        "2024-05-14T09:12:44.500Z  WARN 1 --- [shop] [nio-8080-exec-4] c.e.shop.web.Orders : slow",
        recorded("java_logback.log"),
        "09:12:45.100 [main] INFO  c.e.shop.orders.OrderWorker - retrying order 42",
        "Nov 30, 2026 12:57:00 AM com.example.shop.Checkout main",  # JUL's first line
        recorded("java_jul.log"),
        "INFO: checkout finished",
        # The JVM's own report after a log line is not what that line announced.
        "2024-05-14T09:12:46.000Z ERROR 1 --- [shop] [main] c.e.shop.ShopApplication : fatal",
        recorded("java_uncaught_worker.log"),
        recorded("java_uncaught_main.log"),  # right after the first, as the JVM printed it
        "Picked up JAVA_TOOL_OPTIONS: -XX:MaxRAMPercentage=75",
        "[main] INFO com.example.shop.Api - listening on :8080",
        recorded("java_slf4j.log"),
        "[main] WARN com.example.shop.Api - retrying order 5 in 5s",  # no trace follows
        "[main] INFO com.example.shop.Api - order 5 placed",
    )


def go_log() -> tuple[str, ...]:
    return (
        "2024/05/14 09:12:43 listening on :8080",
        recorded("go_http_panic.log"),
        '{"level":"info","msg":"order placed","id":41}',
        recorded("go_recovered.log"),
        "FAIL\texample.com/shop/internal/queue\t0.012s",
        recorded("go_panic.log"),
        "2024/05/14 09:12:46 restarting",
        "",
        recorded("go_deadlock.log"),
        recorded("go_panic.log"),  # after `exit status 2`: nothing more of the last one
        "panic handler installed (main.go)",
    )


def ruby_log() -> tuple[str, ...]:
    # Ruby prints a cause in the shape of a new trace: two traces back to back would be one.
    return (
        "Puma starting in single mode...",
        recorded("ruby_3.3.log"),
        '* Puma version: 6.4.2 (ruby 3.3.0-p0) ("The Eagle of Durango")',
        recorded("ruby_3.4.log"),
        'I, [2024-05-14T09:12:44.000000 #1]  INFO -- : Started GET "/cart" for 10.0.0.1',
        recorded("ruby_logger.log"),
        'I, [2024-05-14T09:12:45.000000 #1]  INFO -- : Completed 500 Internal Server Error',
        recorded("ruby_stack_level.log"),
        "== Shutting down",
        recorded("ruby_did_you_mean.log"),
        "bye",
    )


def dotnet_log() -> tuple[str, ...]:
    return (
        "info: Microsoft.Hosting.Lifetime[14]\n      Now listening on: http://[::]:8080",
        "[09:12:43 INF] Order 41 placed",
        "[09:12:44 WRN] Stock low for sku 42",  # no trace follows
        recorded("dotnet_serilog.log"),
        recorded("dotnet_console.log"),
        "[09:12:45 INF] Retrying order 42",
        recorded("dotnet_inner.log"),
        recorded("dotnet_async.log"),
        "Application is shutting down...",
        recorded("dotnet_aggregate.log"),
        "[09:12:46 INF] Bye",
    )


LOGS: dict[str, Callable[[], tuple[str, ...]]] = {
    "java": java_log, "python": python_log, "go": go_log, "ruby": ruby_log, "dotnet": dotnet_log,
}
