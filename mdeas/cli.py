"""How entry points end: one line naming the culprit (`error: <what>`), exit status 1, tracebacks on request.

Every `python -m mdeas.X` runs its Hydra app through `run_app` and its task inside `exit_on_data_error`.
`HYDRA_FULL_ERROR=1`, set by the user, shows full tracebacks instead.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from hydra.errors import HydraException, InstantiationException, OverrideParseException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from mdeas.data.errors import DataError
from mdeas.failure import PREFIX, fail
from mdeas.sweep import end_failed_sweep

_WORKER_TRACEBACK = "Original Traceback (most recent call last):"  # how PyTorch re-raises a DataLoader worker's error
FULL_ERROR = "HYDRA_FULL_ERROR"  # set to 1 by the user: full tracebacks instead of one-line errors
INTERRUPTED = 130  # exit status after Ctrl-C, as shells report a program ended by SIGINT
_SET_BY_RUN_APP = "MDEAS_ONE_LINE_ERRORS"  # marks a HYDRA_FULL_ERROR that `run_app` set, not the user
_RESOLVER_ERROR = "ValueError raised while resolving interpolation: "  # our resolvers' messages name their key


def _built(error: InstantiationException) -> str:
    """The config key (or, without one, the target) that Hydra's `instantiate` failed to build."""
    lines = str(error).splitlines()
    keys = [line.split("full_key:", 1)[1].strip() for line in lines if line.strip().startswith("full_key:")]
    if keys and keys[-1]:
        return keys[-1]
    return lines[0].removeprefix("Error in call to target ").rstrip(":") if lines else "?"


def one_line(error: BaseException) -> str:
    """The message of `error` as one line that names the culprit.

    An OSError names its file (a folder to make where a file lies: "a file, not a folder"); an error that Hydra's
    `instantiate` wrapped is reported as its cause, followed by the config key being built; an error PyTorch
    re-raised from a DataLoader worker keeps only its last line.
    """
    if isinstance(error, InstantiationException):
        cause: BaseException = error
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if cause is error:
            return " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        return f"{one_line(cause)} (building {_built(error)})"
    if isinstance(error, FileExistsError) and error.filename is not None and os.path.isfile(error.filename):
        return f"{error.filename}: a file, not a folder"  # mkdir of a folder on the way to an output
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error) or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if _WORKER_TRACEBACK in text:
        return lines[-1].split(": ", 1)[-1]
    return " ".join(lines)


@contextmanager
def exit_on_data_error(*also: type[BaseException]) -> Iterator[None]:
    """For entry points: a DataError, an OSError (a file that cannot be read or written), a config object that
    Hydra cannot build, a mandatory key left unset (`???`), and the errors of the types in `also` end the program
    with `error: <one line>` on stderr and exit status 1 (with HYDRA_FULL_ERROR=1 they propagate with their
    traceback)."""
    try:
        yield
    except MissingMandatoryValue as e:  # a ??? key left unset; caught here, before Hydra adds a line of its own
        if full_traces():
            raise
        fail(_summary(e)[1])
    except (DataError, OSError, InstantiationException, *also) as e:
        if full_traces():
            raise
        fail(one_line(e))


def full_traces() -> bool:
    """Whether the user asked for full tracebacks (HYDRA_FULL_ERROR=1)."""
    return os.environ.get(FULL_ERROR) == "1" and os.environ.get(_SET_BY_RUN_APP) != "1"


def _summary(error: BaseException) -> tuple[list[str], str]:
    """Hydra's report of a config error as (detail lines, one line): the message's first paragraph without
    OmegaConf's `full_key`/`object_type` lines, with the first line of an OmegaConf cause in brackets
    (`Key 'nope' is not in struct`); the rest of the message are details, but for Hydra's config search path."""
    lines = [line for line in str(error).splitlines() if not line.strip().startswith(("full_key:", "object_type="))]
    blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    head = " ".join(line.strip() for line in lines[:blank]).removeprefix(_RESOLVER_ERROR)
    if isinstance(error.__cause__, OmegaConfBaseException):
        head += f" ({str(error.__cause__).splitlines()[0].strip()})"
    if isinstance(error, OverrideParseException):
        head = head.split(" See https://")[0]  # the grammar's page, given below instead
        if head.startswith("LexerNoViableAltException"):  # a character the grammar has no token for, as é
            head = "a character the override grammar does not take"
        if error.override and error.override not in head:
            head = f"Error parsing override {error.override!r}: {head}"  # Hydra names it for some parse errors only
        head += f" ({QUOTING_HINT})"
    details = [line for line in lines[blank:] if line.strip()]
    if SEARCH_PATH in details:  # where Hydra looked (the package's own folders): noise beside the choices
        start = details.index(SEARCH_PATH)
        end = next((i for i in range(start + 1, len(details)) if not details[i][:1].isspace()), len(details))
        details = details[:start] + details[end:]
    return details, head


SEARCH_PATH = "Config search path:"


QUOTING_HINT = (
    "a value holding ( ) [ ] , or letters beyond ASCII is quoted whole, 'key=\"in/é (1).jpg\"'; "
    "https://hydra.cc/docs/advanced/override_grammar/basic"
)


OUT_OF_MEMORY_WORDS = ("can't allocate memory", "Insufficient memory")  # PyTorch's CPU allocator, OpenCV


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` says memory ran out: a MemoryError (numpy's too), PyTorch's OutOfMemoryError, or what
    PyTorch's CPU allocator and OpenCV raise instead (a RuntimeError, a cv2.error)."""
    said = str(error)
    return isinstance(error, MemoryError | torch.OutOfMemoryError) or any(
        words in said for words in OUT_OF_MEMORY_WORDS
    )


def _sigterm_as_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_app(app: Callable[[], object], sigterm_as_ctrl_c: bool = False) -> None:
    """Run a Hydra app (a `@hydra.main` function) so that the errors Hydra reports itself, before or around the
    task (an unknown config choice or key, a run directory that cannot be written), end with one line
    `error: <what>` naming the choice, key or path, and exit status 1. The details Hydra gives (e.g. the available
    choices) come first. Ctrl-C ends it with `interrupted` and exit status 130; running out of memory
    (`out_of_memory`) with one line saying so. With HYDRA_FULL_ERROR=1 set by the user, Hydra's own reporting is
    left as it is. `sigterm_as_ctrl_c`: SIGTERM (`kill`) ends it as Ctrl-C does, its worker processes and
    half-written files cleaned up (for the writers of datasets; training handles SIGTERM itself, resumably)."""
    if sigterm_as_ctrl_c:
        signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
    if full_traces():
        app()
        return
    os.environ.update({FULL_ERROR: "1", _SET_BY_RUN_APP: "1"})  # Hydra raises instead of printing (DDP workers too)
    try:
        app()
    except (HydraException, OmegaConfBaseException) as e:
        details, head = _summary(e)
        sys.exit("\n".join([*details, PREFIX + head]))
    except OSError as e:
        fail(one_line(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # what was being written is left as it was (atomic writes)
        raise SystemExit(INTERRUPTED) from None
    except Exception as e:
        if out_of_memory(e):  # a size or count beyond this machine, not a fault to trace
            fail(f"out of memory ({one_line(e)}): a size, batch or count too large for this machine?")
        end_failed_sweep(e)  # every job of a sweep failed and Optuna then raised: the jobs' errors, in one line
        raise
