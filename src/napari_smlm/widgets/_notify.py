"""Messages to the user: napari notifications (each also logged) and the one way to word an error."""

from __future__ import annotations

import logging

__all__ = ["notify_error", "notify_info", "notify_warning", "error_reason"]

log = logging.getLogger(__name__)


def notify_error(message: str) -> None:
    """A napari error notification (and a log line)."""
    from napari.utils.notifications import show_error

    log.warning("%s", message)
    show_error(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    log.info("%s", message)
    show_info(message)


def notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    log.warning("%s", message)
    show_warning(message)


def error_reason(exc: BaseException | None) -> str:
    """The reason of an error first, then where: ``"<problem> (<file>)"`` for file/checkpoint errors."""
    if exc is None:
        return "unknown error"
    problem = getattr(exc, "problem", None)
    path = getattr(exc, "path", None)
    if problem:
        return f"{problem} ({path})" if path else str(problem)
    return str(exc) or type(exc).__name__
