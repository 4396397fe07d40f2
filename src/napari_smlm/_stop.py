"""Stop on SIGINT / SIGTERM at the next batch, keeping what was computed (command line only).

The first signal sets :attr:`GracefulStop.requested`; commands that drain a core generator
(``simulate``, ``localize``, ``train``) look at it after every update, stop the generator,
write what is complete and exit with 130. A second signal raises ``KeyboardInterrupt``
(atomic writers then leave earlier files untouched), except while the results are being
written (:meth:`GracefulStop.finishing`). Commands that do not poll (``render``,
``evaluate``) get ``KeyboardInterrupt`` at once. SIGTERM (a cluster's time limit) is treated
like SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("napari_smlm")

__all__ = ["GracefulStop", "STOP"]


class GracefulStop:
    """Signal handling for one command run (a context manager; handlers restored on exit)."""

    def __init__(self) -> None:
        self.requested = False
        self.polling = False
        self._finishing = False
        self._saved: dict[int, object] = {}
        #: After a signal, keep ignoring signals once the command returns (a real process
        #: about to exit; not for in-process callers such as tests).
        self.keep_handlers = False

    def __enter__(self) -> GracefulStop:
        self.requested = self.polling = self._finishing = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.getsignal(sig)
                # installed even when the shell started us with SIGINT ignored (`cmd &`)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, h in self._saved.items():
            if self.requested and self.keep_handlers:
                signal.signal(sig, signal.SIG_IGN)  # exiting with 130: a late repeat changes nothing
            else:
                signal.signal(sig, h)  # type: ignore[arg-type]
        self._saved.clear()

    def poll(self) -> None:
        """The command looks at :attr:`requested` after every batch from now on."""
        self.polling = True

    def finishing(self) -> None:
        """Results are being written: further signals are logged, not raised."""
        self._finishing = True

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self._finishing:
            log.warning("%s: still writing the results, please wait", name)
            self.requested = True
            return
        if self.polling and not self.requested:
            self.requested = True
            log.warning("%s: stopping after the current batch and keeping what is done (again to abort)", name)
            return
        self.requested = True
        raise KeyboardInterrupt(name)


#: The process-wide instance used by :mod:`napari_smlm.cli`.
STOP = GracefulStop()
