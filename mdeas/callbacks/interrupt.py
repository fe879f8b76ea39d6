"""On Ctrl-C or SIGTERM: leave a resumable checkpoint and say how to resume."""

from __future__ import annotations

import contextlib
import logging
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class ResumeOnInterrupt(pl.Callback):
    """Saves `<dirpath>/interrupted.ckpt` when training is interrupted and logs the command line to resume.

    Interrupted means Ctrl-C (SIGINT) or SIGTERM, what `kill`, schedulers and container runtimes send before they
    kill a process: Lightning's handler notes a SIGTERM and raises `SIGTERMException` once the batch under way is
    done; during fitting this callback handles Ctrl-C the same way (`stopped_by` then says SIGINT), so that no
    checkpoint holds half a batch (a forward pass's BatchNorm statistics without its optimiser step). A second
    Ctrl-C stops at once (KeyboardInterrupt, Lightning's graceful stop: its checkpoint may hold half a batch). A
    run started in the background by a shell ignores SIGINT, so SIGTERM is its way out.

    Resuming from it goes on with the interrupted epoch at its next batch, in the same order with the same
    augmentation draws (the train loader is resumable, `SkipCountingLoader.state_dict`), so the run ends as an
    uninterrupted one would, except with `trainer.accumulate_grad_batches` > 1 inside a window (warned). Ctrl-C
    during fitting's validation counts too (not during validate/test). A SIGTERM during fitting's validation waits
    for it to end (and for the checkpoints it triggers): a checkpoint taken mid-validation would resume past it, so
    its score would never compete for best.ckpt nor step a plateau schedule.

    Not Lightning's `OnExceptionCheckpoint`: with one among the callbacks, `fit(ckpt_path=None)` resumes from the
    newest of its checkpoint and `last.ckpt` (`_CheckpointConnector._parse_ckpt_path`), so a run in a folder that
    holds them would continue the old run, unchecked, instead of starting afresh; it also saves on any exception
    and deletes its checkpoint when a later fit finishes.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._deferred = False
        self.overrides = "<same overrides>"  # the run's command-line overrides, shell-quoted (train sets them)
        self.resume_hint: str | None = None  # the command to resume, when not `ckpt_path=<interrupted.ckpt>`
        self.stopped_by: int | None = None  # the signal that stopped the last fit (SIGINT, SIGTERM), if any

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning took its snapshot of the signal handlers: it puts them back when the fit ends
        self.stopped_by = None
        default = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not ignored, not the user's own
        if default and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, lambda *_: self._ctrl_c(trainer))

    def _ctrl_c(self, trainer: pl.Trainer) -> None:
        """First Ctrl-C while fitting: stop after the batch under way, as after a SIGTERM."""
        log.warning("Ctrl-C: stopping after the batch under way (Ctrl-C again stops at once)")
        self.stopped_by = signal.SIGINT
        trainer._signal_connector.received_sigterm = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C raises KeyboardInterrupt

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        # Lightning's evaluation loop raises SIGTERMException after this hook when the flag is set: hide it until
        # the validation is over; the fit loop raises it then, after the epoch's checkpoints
        if trainer.received_sigterm and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            trainer._signal_connector.received_sigterm = False
            self._deferred = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._deferred:
            trainer._signal_connector.received_sigterm, self._deferred = True, False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != TrainerFn.FITTING:
            return
        if isinstance(exception, SIGTERMException) and self.stopped_by is None:
            self.stopped_by = signal.SIGTERM
        path = self.dirpath / "interrupted.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # the whole state (optimiser, loops): what a resume needs
        stepped = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if stepped % trainer.accumulate_grad_batches:
            log.warning(
                "interrupted inside a gradient accumulation window: the %d batches accumulated since the last "
                "optimiser step are not in %s, and a resume goes on after them",
                stepped % trainer.accumulate_grad_batches, path,
            )  # fmt: skip
        same = [self.overrides] if self.overrides else []
        hint = self.resume_hint or " ".join(["python -m mdeas.train", *same, shlex.quote(f"ckpt_path={path}")])
        log.error("interrupted at epoch %d, step %d; resume with: %s", trainer.current_epoch, trainer.global_step, hint)


@contextlib.contextmanager
def ctrl_c_as_interrupt(trainer: pl.Trainer) -> Iterator[None]:
    """Around a trainer call: a Ctrl-C that ended it comes out as KeyboardInterrupt, so that the entry point ends as
    after any Ctrl-C (`interrupted`, exit status 130; `mdeas.cli.run_app`), both when training stopped after its
    batch (`ResumeOnInterrupt`, Lightning's SIGTERMException) and when Lightning stopped at once (it exits 1 after
    a KeyboardInterrupt: a second Ctrl-C, or one outside training)."""
    try:
        yield
    except SIGTERMException:  # a SystemExit too
        if any(isinstance(c, ResumeOnInterrupt) and c.stopped_by == signal.SIGINT for c in trainer.callbacks):
            raise KeyboardInterrupt from None
        raise
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) in its `except KeyboardInterrupt`
            raise KeyboardInterrupt from None
        raise
