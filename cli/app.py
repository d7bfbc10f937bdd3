"""The `sketchkit` command: this file only assembles commands and decides exit codes.

Errors: the library raises SketchkitError subclasses; `main()` prints one red line to stderr and
exits 2 for bad input or usage (a full disk, a read-only output folder, not enough memory too), 1 for anything else,
130 on Ctrl-C or SIGTERM. `--debug` or
SKETCHKIT_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import typer

from sketchkit import __version__

from . import bench, convert, doctor, evaluate, h5, labels, raster, segment, serve, train
from ._errors import Interrupted, print_error
from ._options import stderr

app = typer.Typer(
    name="sketchkit",
    help="Stroke-aware open-vocabulary segmentation of freehand scene sketches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sketchkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors (or set SKETCHKIT_DEBUG=1)."),
) -> None:
    if debug:
        os.environ["SKETCHKIT_DEBUG"] = "1"


app.command("convert")(convert.convert)
app.command("raster")(raster.raster)
app.command("segment")(segment.segment)
app.command("labels")(labels.labels)
app.command("eval")(evaluate.evaluate)
app.command("train")(train.train)
app.command("doctor")(doctor.doctor)
app.command("import-checkpoint")(train.import_checkpoint)
app.command("bench")(bench.bench)
app.command("serve")(serve.serve)
app.add_typer(h5.app, name="h5")


def _debug() -> bool:
    return os.environ.get("SKETCHKIT_DEBUG", "") not in ("", "0") or "--debug" in sys.argv


def _usage_errors() -> tuple[type, ...]:
    """Typer's (and, for older Typer, Click's) usage-error base classes: they carry exit code 2."""
    kinds: list[type] = [typer.TyperException]
    try:
        import click

        kinds.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return tuple(kinds)


USAGE_ERRORS = _usage_errors()
"""Found once at import: an except clause that imported them would fail itself with no memory left."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM (kill, a scheduler's pre-emption, torchrun stopping its workers) into KeyboardInterrupt
    in the main thread, so every command unwinds from it like from Ctrl-C: the file being written is
    abandoned (its temp file removed, an older output kept) and the command exits 130 with one line.

    A signal that lands in code whose exceptions Python ignores (a weakref callback, a generator closed by
    the garbage collector) would be lost: the unraisable-exception hook sees it go and has it sent again a
    moment later, from a thread (raised inside the hook, it would be ignored too)."""
    active = threading.Event()

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def resend() -> None:
        if active.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    def resend_lost_interrupt(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Timer(0.05, resend).start()
        else:
            previous_hook(unraisable)

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (main() called from a thread): leave signals alone
        yield
        return
    previous_hook, sys.unraisablehook = sys.unraisablehook, resend_lost_interrupt
    active.set()
    try:
        yield
    finally:
        active.clear()
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


def _escape_unencodable_output() -> None:
    """Print what the terminal cannot encode (a file name's lone surrogates) as escapes, never fail on it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning known failures into one line and an exit code."""
    from sketchkit.errors import SketchkitError, as_memory_error, as_sketchkit_error

    _escape_unencodable_output()
    try:
        with sigterm_as_interrupt():
            result = app(args=argv, standalone_mode=False)
        if result == 130:  # Typer's answer to KeyboardInterrupt (Ctrl-C, SIGTERM)
            stderr.print("Interrupted", style="yellow", highlight=False)
        return result if isinstance(result, int) else 0  # typer.Exit(code) comes back as a return value
    except Interrupted as exc:
        stderr.print(exc.args[0], highlight=False, soft_wrap=True)
        return 130
    except OSError as exc:  # a full disk, a read-only folder, a link loop the code before did not name
        return _known(as_sketchkit_error(exc) or as_memory_error(exc), exc)
    except SketchkitError as exc:
        return _known(exc, exc)
    except KeyboardInterrupt:
        stderr.print("Interrupted", style="yellow", highlight=False)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        stderr.print("Aborted", style="yellow", highlight=False)
        return 130
    except USAGE_ERRORS as exc:  # unknown command or option, missing argument, bad value: Typer's own message
        exc.show()
        return getattr(exc, "exit_code", 2) or 2
    except Exception as exc:  # anything unexpected, but an allocation failure (MemoryError, torch's) is one line
        return _known(as_memory_error(exc), exc)


def _known(mapped, exc: Exception) -> int:
    """One line for `mapped` (the SketchkitError an OSError or allocation failure stands for), else unexpected."""
    if mapped is None:
        return _unexpected(exc)
    if _debug():
        stderr.print_exception()
    print_error(mapped)
    return mapped.exit_code


def _unexpected(exc: Exception) -> int:
    from sketchkit.errors import as_sketchkit_error

    mapped = as_sketchkit_error(exc)  # a library's own error for a full disk (safetensors)
    if mapped is not None:
        print_error(mapped)
        return mapped.exit_code
    if _debug():
        stderr.print_exception()
    print_error(RuntimeError(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"))
    return 1


def run() -> None:
    """The `sketchkit` command and `python -m sketchkit.cli`: main() with its exit code made final."""
    code = main()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the work is done: a late SIGTERM must not change the exit code
    if code == 130:
        # An interrupt that once passed through code run by exec() leaves CPython's "unhandled
        # KeyboardInterrupt" mark set, and CPython would then end the process by SIGINT instead of 130.
        # Everything is cleaned up by now (temp files removed, claims released): leave directly.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    run()
