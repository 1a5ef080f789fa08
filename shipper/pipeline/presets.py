"""Multiline machines: the states a group moves through, and the built-in stack trace presets.

A machine is modelled on Fluent Bit's multiline parsers: rows `(from states, test, to state)`.
A line that passes a test of the group's state joins the group and moves it to that row's
state; a line that passes none ends the group, and is then examined afresh by the start
state's rows (it may start the next group). A state with no rows of its own ends its group
as soon as a line takes the group there.

A blank line right after a trace belongs to it: java.util.logging, Spring Boot (`%wEx`) and
`print(traceback.format_exc())` write one, and chained sections (Python's causes, Go's
goroutines, .NET's aggregated exceptions) come after one.

Tests are tried in order, so each state lists its cheap, common test first (a `startswith`,
the first character) and a regex only where nothing cheaper decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import methodcaller

Test = Callable[[str], object]  # truthy: the line passes
Rows = Sequence[tuple[str, Test, str]]  # (from states, test, to state)


@dataclass(eq=False, slots=True)
class State:
    name: str
    rules: tuple[tuple[Test, State], ...] = ()  # (test, next state), tried in order


def machine(rows: Rows) -> State:
    """The start state of the machine of `rows`: from states are separated by spaces, and
    `start` is the state of a line outside any group."""
    states: dict[str, State] = {}

    def state(name: str) -> State:
        return states.setdefault(name, State(name))

    start = state("start")
    for sources, test, target in rows:
        if target == "start":
            raise ValueError("a row cannot lead back to start: a group ends by failing a test")
        for source in sources.split():
            state(source).rules += ((test, state(target)),)
    return start


def prefix(*prefixes: str) -> Test:
    return methodcaller("startswith", prefixes)  # one C call for any number of prefixes


def indented(line: str) -> bool:
    return line[:1] in (" ", "\t") and not line.isspace()  # a white line is no continuation


def blank(line: str) -> bool:
    return not line


def regex(pattern: str) -> Test:
    return re.compile(pattern).match  # anchored: a line that does not fit fails early


# The line a logger writes before the trace it logs (`log.error("request failed", e)`,
# `logging.exception("request failed")`) joins the trace: in Loki the entry then starts with
# its time, level and message, and a level stage finds ERROR in it. Only a line naming a
# level that comes with traces (upper case, as Logback, Log4j, java.util.logging, Python
# logging, NLog and Serilog write it) is held to see whether a trace follows; loggers write
# the level in the first 80 characters. Plain literals: re finds them 7x faster than with \b.
_LEVEL = re.compile(r"ERROR|WARN|FATAL|SEVERE|CRITICAL|ERR\]|WRN\]|FTL\]").search


def level_line(line: str) -> bool:
    return _LEVEL(line, 0, 80) is not None


# -- Java (and Kotlin, Scala: any JVM printStackTrace) --------------------------------------------

# `java.lang.IllegalStateException: boom`, `Exception in thread "main" java.lang.Error`: a
# dotted class name ending in Exception, Error or Throwable (or a class nested in one, as
# Spring's `HttpClientErrorException$NotFound`), then `:` or the end of the line.
_JAVA_CLASS = r"(?:[a-zA-Z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)(?:\$[\w$]+)?(?::|$)"

JAVA: Rows = (
    ("start", regex(r'(?:Exception in thread "[^"]*" )?' + _JAVA_CLASS), "trace"),
    ("start", level_line, "logged"),
    # The JVM's own `Exception in thread` report is not what a log line announced. Spring
    # Boot's `%wEx` writes a blank line between them.
    ("logged", blank, "spaced"),
    ("logged spaced", regex(_JAVA_CLASS), "trace"),
    # `\tat ...`, `\t... 12 more`, `\tSuppressed: ...`, `\t\tat ...`, and indented lines of a
    # multi-line message (`  Detail: Key (id)=(1) already exists.`)
    ("trace", indented, "trace"),
    ("trace", prefix("Caused by: ", "Wrapped by: "), "trace"),  # Wrapped by: Logback, reversed
    ("trace", blank, "end"),
)

# -- Python -----------------------------------------------------------------------------------

_TRACEBACK = prefix("Traceback (most recent call last):",
                    "  + Exception Group Traceback (most recent call last):")

PYTHON: Rows = (
    ("start chained", _TRACEBACK, "traceback"),
    ("start", prefix('  File "'), "traceback"),  # a script's SyntaxError has no header
    ("start", level_line, "logged"),
    ("logged", _TRACEBACK, "traceback"),
    # Frames, code, `^^^^` carets, `[Previous line repeated 996 more times]`, and the whole of
    # an exception group (`  | ...`, `  +-+---- 1 ----`) are indented; the exception is not.
    ("traceback", indented, "traceback"),
    ("traceback", regex(r"[A-Za-z_][\w.]*(?::|$)"), "raised"),  # ValueError: bad, KeyboardInterrupt
    # Chained: a blank line, the chaining sentence, a blank line, the next traceback.
    ("traceback raised", blank, "gap"),
    ("gap", prefix("During handling of the above exception, another exception occurred:",
                   "The above exception was the direct cause of the following exception:"),
     "chaining"),
    ("chaining", blank, "chained"),
)

# -- Go ---------------------------------------------------------------------------------------

_GOROUTINE = re.compile(r"goroutine \d+ .*\]:$|runtime stack:$").match

GO: Rows = (
    ("start", prefix("panic: ", "fatal error: ", "runtime: "), "panic"),
    ("start", lambda line: "http: panic serving " in line, "panic"),  # net/http logs, no blank
    # `panic: boom [recovered]` then `\tpanic: boom`; `[signal SIGSEGV: ...]`; the runtime's
    # lines before `fatal error: stack overflow`
    ("panic", prefix("\t", "[signal ", "panic: ", "fatal error: ", "runtime: "), "panic"),
    ("panic", _GOROUTINE, "frames"),
    ("panic frames", blank, "gap"),
    ("gap", _GOROUTINE, "frames"),  # goroutines are separated by a blank line
    # `\t/src/main.go:12 +0x1d`, then `main.main()`, `net/http.(*conn).serve(0xc000...)`,
    # `created by main.main in goroutine 1`, `...additional frames elided...`
    ("frames", prefix("\t", "created by ", "...additional frames elided..."), "frames"),
    ("frames", regex(r"\S+\(.*\)$"), "frames"),
    ("frames", prefix("exit status "), "end"),  # `go run` reports the exit: nothing follows
)

# -- Ruby -------------------------------------------------------------------------------------

# `app.rb:3:in 'Object#foo': msg (RuntimeError)` (3.4) or `app.rb:3:in `foo': ...` (before):
# a frame with its message, and the same shape for each cause; Logger prints bare frames.
_RUBY_FRAME = re.compile(r"\S.*?:\d+:in [`']").match


def _ruby_frame(line: str) -> object:
    return ":in " in line and _RUBY_FRAME(line)


_RUBY_LOGGED = re.compile(r" \((?:[A-Z]\w*::)*[A-Z]\w*\)$").search


def _ruby_logged(line: str) -> object:
    """Logger's `E, [...] ERROR -- : boom (RuntimeError)`, followed by bare frames."""
    return line.endswith(")") and _RUBY_LOGGED(line)


RUBY: Rows = (
    ("start", _ruby_frame, "trace"),
    ("start", _ruby_logged, "trace"),
    # `\tfrom app.rb:7:in '<main>'`, `\t ... 10067 levels...` (SystemStackError)
    ("trace", prefix("\tfrom ", "\t ... "), "trace"),
    ("trace", _ruby_frame, "trace"),
    ("trace", prefix("Did you mean?"), "trace"),  # NameError's second message line
)

# -- .NET -------------------------------------------------------------------------------------

_DOTNET_EXCEPTION = regex(r"(?:\w+\.)+\w*Exception\b")  # also `SqlException (0x80131904): ...`

DOTNET: Rows = (
    ("start", prefix("Unhandled exception. ", "Unhandled Exception: "), "trace"),
    ("start", _DOTNET_EXCEPTION, "trace"),
    # Microsoft.Extensions.Logging's console format: `fail: Category[0]`, then every line of
    # the message and its exception indented by six spaces.
    ("start", prefix("trce: ", "dbug: ", "info: ", "warn: ", "fail: ", "crit: "), "console"),
    ("start", level_line, "logged"),
    ("logged", _DOTNET_EXCEPTION, "trace"),
    ("console", indented, "console"),
    # `   at Ns.Class.Method() in /src/File.cs:line 12`, ` ---> System.Exception: inner`,
    # `   --- End of inner exception stack trace ---`
    ("trace", indented, "trace"),
    ("trace", prefix("--- End of stack trace from previous location"), "trace"),  # async
    # AggregateException's third and later inner exceptions each follow a blank line.
    ("trace", blank, "gap"),
    ("gap", prefix(" ---> (Inner Exception #"), "trace"),
)

PRESETS: dict[str, Rows] = {
    "java": JAVA, "python": PYTHON, "go": GO, "ruby": RUBY, "dotnet": DOTNET,
}
