"""How every ``adrag`` command fails: one line on stderr, ``error: ...``, never a traceback.

Exit 1 for errors, 2 for usage errors (click's convention: a bad option or argument). With
``-v`` an unexpected error's traceback goes to the log as well.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

import click

from adrag_assets.redact import redact_text

log = logging.getLogger("adrag.cli")

NOISY_LOGGERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "milvus_lite")


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"error: {one_line(message)}", fg="red", err=True)
    sys.exit(code)


def one_line(text: str) -> str:
    return redact_text(" ".join(str(text).split()))


def quiet_milvus_logs(verbose: bool) -> None:
    """Keep pymilvus' and milvus-lite's own logs (every failed call with its traceback, retry
    notes) off stderr unless ``-v``: the command reports the failure itself, once."""
    if verbose:
        return
    import pymilvus  # noqa: F401  (importing it configures its loggers: quiet them after)

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def quiet_mlflow_logs() -> None:
    """Keep MLflow's store setup (INFO, on its own handler) off stderr: it sets that level
    when it is imported (later, lazily), from this variable."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


class OneLineErrors:
    """A click command or group mixin: every error ends as one ``error:`` line (see module)."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()  # `adrag` alone: the help, not an error
            sys.exit(e.exit_code)
        except click.UsageError as e:
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            fail(e.format_message() + hint, e.exit_code)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code)
        except click.Abort:
            fail("aborted")
        except Exception as e:
            log.info("the command failed", exc_info=True)  # shown with -v
            fail(_known(e) or f"{type(e).__name__}: {e}")
        sys.exit(rv if isinstance(rv, int) else 0)


def _known(error: Exception) -> str | None:
    """The message of an error that already is one line saying what to do, or None."""
    try:  # imported here: deltalake's import is paid only when failing
        from adrag_assets.tables import TablesUnavailable
    except Exception:
        return None
    return str(error) if isinstance(error, TablesUnavailable) else None


class Command(OneLineErrors, click.Command):
    pass


class Group(OneLineErrors, click.Group):
    pass


class Text(click.ParamType):
    """Text from the command line: valid UTF-8 and, with ``blank`` set, not blank.

    ``blank`` is what to say when it is empty (e.g. "describe the photo you are looking for").
    Arguments that are not valid UTF-8 arrive surrogate-escaped; they would fail deep inside
    the encoder or gRPC, so they are refused here.
    """

    name = "text"

    def __init__(self, blank: str | None = None) -> None:
        self.blank = blank

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if param is None:
            what = "the value"
        elif isinstance(param, click.Argument):
            what = param.human_readable_name  # QUERY
        else:
            what = " / ".join(param.opts)  # --segment
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise click.UsageError(
                f"{what} is not valid UTF-8 text (check the terminal's encoding)", ctx
            ) from None
        if self.blank is not None and not value.strip():
            raise click.UsageError(f"{what} is empty: {self.blank}", ctx)
        return value
