"""Structured logs: one JSON object per line on stderr.

Log calls pass opaque ids (transfer ids, school codes, request ids) in
`extra`; names and national ids never reach a log line. Attributes of the
standard LogRecord are left out so each line holds only what was said.
Exception texts are logged without PostgreSQL's DETAIL lines, which quote
the offending row's values (`Key (national_id, level)=(…)`).

Every line made while a call is served carries that call's `trace_id`
(`TraceIdFilter`, from `transfer.tracecontext.current_trace_id`): the call
log line, and any line the domain or storage makes meanwhile, without those
layers knowing grpc.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from transfer.tracecontext import current_trace_id

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_DETAIL = re.compile(r"^(\s*DETAIL:).*$", re.MULTILINE)


def _exception_text(formatter: logging.Formatter, exc_info: logging._SysExcInfoType) -> str:
    """The traceback, with database DETAIL lines (they quote column values) withheld."""
    return _DETAIL.sub(r"\1 (withheld: it may quote the row's values)", formatter.formatException(exc_info))


class TraceIdFilter(logging.Filter):
    """Adds the trace id of the call under way (if any) to a record that has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            trace_id = current_trace_id.get()
            if trace_id:
                record.trace_id = trace_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = _exception_text(self, record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + _exception_text(self, record.exc_info)
        return line


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(TraceIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
