"""MLflow tracing for retrieval, generation and each agent turn, and adrag's MLflow store.

Traces go to a local MLflow store under ``$ADRAG_HOME/mlflow`` by default (a SQLite tracking
database: MLflow 3 stores trace spans in the tracking store itself, no server needed). Browse
them with ``mlflow ui --backend-store-uri sqlite:///$ADRAG_HOME/mlflow/mlflow.db``.

Settings (``load_settings().tracing``):

* ``ADRAG_MLFLOW_TRACKING_URI``: any MLflow tracking URI (another SQLite file, a server);
* ``ADRAG_MLFLOW_EXPERIMENT``: the experiment name, default ``adrag``;
* ``ADRAG_TRACING=off`` (or ``0``/``false``/``no``): no tracing at all.

Tracing is an observer: whatever MLflow does (missing store, locked database, a bug), the
service goes on and a warning is logged. Everything this module puts in a span passes through
:func:`adrag_assets.redact.redact`, and exceptions are recorded by this module rather than by
MLflow, so their messages and stack traces are redacted too: secrets such as
``REPLICATE_API_TOKEN`` never reach a trace.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adrag_assets.redact import redact
from adrag_assets.settings import DEFAULT_EXPERIMENT, SettingsError, load_settings

log = logging.getLogger(__name__)

# MLflow's SpanType values are plain strings; naming them here keeps `import mlflow` (over a
# second) off the import path of everything that only wants to trace.
RETRIEVER = "RETRIEVER"
TOOL = "TOOL"
CHAIN = "CHAIN"
AGENT = "AGENT"
CHAT_MODEL = "CHAT_MODEL"
UNKNOWN = "UNKNOWN"

_lock = threading.Lock()
_configured: tuple[str, str] | None = None  # (tracking URI, experiment name) in force
_warned: set[str] = set()


def _warn_once(what: str, error: BaseException) -> None:
    # One warning per kind of failure: a broken store must not flood the app's log.
    if what not in _warned:
        _warned.add(what)
        log.warning(
            "MLflow tracing: %s failed (%s: %s); going on without it",
            what,
            type(error).__name__,
            redact(str(error)),
        )


def tracking_uri() -> str:
    """The tracking URI traces and registered models go to (``ADRAG_MLFLOW_TRACKING_URI``)."""
    return load_settings().tracing.tracking_uri


def experiment_name() -> str:
    """The experiment traces and registered models are logged under."""
    return load_settings().tracing.experiment


def store_exists(uri: str | None = None) -> bool:
    """False only for a local SQLite store whose file is not there yet: nothing was recorded,
    so there is nothing to look up (and no reason to create it)."""
    uri = tracking_uri() if uri is None else uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def use_store() -> str:
    """Point MLflow (process-wide) at adrag's store and experiment; return the tracking URI.

    Unlike :func:`configure` it ignores ``ADRAG_TRACING`` and lets errors through: callers
    such as the encoder's registration need the store and must say when it is unusable.
    """
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id(uri, experiment_name()))
    return uri


def configure() -> bool:
    """Point MLflow at adrag's store and experiment; True when tracing is ready.

    Idempotent and cheap after the first call. MLflow's tracking URI and active experiment are
    process-wide, so they are re-applied whenever the environment (or someone else) changed
    them since the last call.
    """
    global _configured
    try:
        settings = load_settings().tracing
    except SettingsError as e:
        _warn_once("reading the settings", e)
        return False
    if not settings.enabled:
        return False
    uri, experiment = settings.tracking_uri, settings.experiment
    with _lock:
        try:
            import mlflow

            if _configured == (uri, experiment) and mlflow.get_tracking_uri() == uri:
                return True
            use_store()
        except Exception as e:
            _configured = None
            _warn_once(f"setting up the store at {uri}", e)
            return False
        _configured = (uri, experiment)
        return True


def experiment_id(uri: str, name: str = DEFAULT_EXPERIMENT) -> str:
    """The id of experiment ``name`` in the store at ``uri``, created when missing."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):
        # Without this MLflow puts artifacts in ./mlruns under whatever the current directory
        # happens to be; keep them beside the database instead.
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except Exception:
        # Another process (the app, a CLI call) may have created it in the meantime.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: Any) -> Any:
    """``value`` redacted, and with every string valid UTF-8: text decoded with
    ``surrogateescape`` (undecodable bytes read from a pipe or a file name) cannot be encoded
    by MLflow's exporter, which would log a traceback for each span and lose the trace."""
    return _valid_text(redact(value))


def _valid_text(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    return value


class Span:
    """A span that cannot fail: each call is forwarded to MLflow when there is a live span."""

    def __init__(self, live: Any = None) -> None:
        self._live = live

    @property
    def recording(self) -> bool:
        return self._live is not None

    def _call(self, what: str, fn: Any) -> None:
        if self._live is None:
            return
        try:
            fn()
        except Exception as e:
            _warn_once(what, e)

    def set_inputs(self, inputs: Any) -> None:
        self._call("set_inputs", lambda: self._live.set_inputs(_clean(inputs)))

    def set_outputs(self, outputs: Any) -> None:
        self._call("set_outputs", lambda: self._live.set_outputs(_clean(outputs)))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._call("set_attributes", lambda: self._live.set_attributes(_clean(dict(attributes))))

    def set_session(self, session_id: str, user: str = "") -> None:
        """Mark this span's trace as part of conversation ``session_id``, asked by ``user``.

        MLflow's conventions (``TraceMetadataKey.TRACE_SESSION`` / ``TRACE_USER``, trace
        metadata): its UI groups a session's traces, and ``search_traces`` finds them with
        ``filter_string="metadata.`mlflow.trace.session` = '<id>'"``.
        """

        def tag() -> None:
            import mlflow
            from mlflow.tracing.constant import TraceMetadataKey

            metadata = {TraceMetadataKey.TRACE_SESSION: _clean(str(session_id))}
            if user:
                metadata[TraceMetadataKey.TRACE_USER] = _clean(str(user))
            mlflow.update_current_trace(metadata=metadata)

        if session_id:
            self._call("set_session", tag)

    def set_documents(self, documents: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Retriever outputs as MLflow Documents (``page_content``, ``metadata``); the MLflow
        UI renders them as a ranked list, with ``metadata["doc_uri"]`` as the link."""

        def set_docs() -> None:
            from mlflow.entities import Document

            docs = [
                Document(page_content=_clean(text), metadata=_clean(dict(meta)))
                for text, meta in documents
            ]
            self._live.set_outputs(docs)

        self._call("set_documents", set_docs)

    def record_error(self, error: BaseException) -> None:
        """Mark the span failed, with the exception's type, message and stack, all redacted."""

        def record() -> None:
            from mlflow.entities import SpanEvent, SpanStatus, SpanStatusCode

            message = _clean(str(error))
            stack = _clean("".join(traceback.format_exception(error)).strip())
            self._live.add_event(
                SpanEvent(
                    name="exception",
                    attributes={
                        "exception.type": type(error).__name__,
                        "exception.message": message,
                        "exception.stacktrace": stack,
                    },
                )
            )
            self._live.set_status(
                SpanStatus(SpanStatusCode.ERROR, description=f"{type(error).__name__}: {message}")
            )

        self._call("record_error", record)


@contextmanager
def span(
    name: str,
    span_type: str = UNKNOWN,
    *,
    inputs: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """``with span("retrieve", RETRIEVER, inputs={...}) as s: ...``; nests like mlflow's.

    An exception from the body is recorded on the span (redacted) and re-raised unchanged.
    """
    manager = None
    handle = Span()
    if configure():
        try:
            import mlflow

            manager = mlflow.start_span(name, span_type=span_type)
            handle = Span(manager.__enter__())
        except Exception as e:
            manager = None
            _warn_once(f"starting span {name!r}", e)
    if inputs is not None:
        handle.set_inputs(inputs)
    if attributes:
        handle.set_attributes(attributes)
    try:
        yield handle
    except BaseException as error:
        handle.record_error(error)
        raise
    finally:
        if manager is not None:
            try:
                # Exit as if the body succeeded: the error is already recorded, redacted;
                # MLflow's own recording would store the raw message and stack trace.
                manager.__exit__(None, None, None)
            except Exception as e:
                _warn_once(f"ending span {name!r}", e)


def flush() -> None:
    """Wait for traces queued for export (MLflow exports them on a background thread)."""
    if _configured is None:
        return
    try:
        import mlflow

        mlflow.flush_trace_async_logging()
    except Exception as e:
        _warn_once("flushing traces", e)
