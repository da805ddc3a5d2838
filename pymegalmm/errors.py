"""pymegalmm's exceptions: standard exception types, so ``except ValueError`` keeps working.

Every error raised for a user's input is one of these, raised in pymegalmm's own
code, and its message names the argument and says how to fix it.
"""

from __future__ import annotations

__all__ = ["InputError", "InputTypeError", "LabelError", "MegaLMMError", "SamplerError",
           "ConcurrencyError", "RunDirectoryError", "StoreError", "PosteriorFunctionError"]


class MegaLMMError(Exception):
    """Base class of pymegalmm's exceptions."""


class InputError(MegaLMMError, ValueError):
    """An argument has the right type but a value pymegalmm cannot use."""


class InputTypeError(MegaLMMError, TypeError):
    """An argument has a type pymegalmm cannot use."""


class LabelError(MegaLMMError, KeyError, ValueError):
    """A name or label (trait, level, variable, column) is missing or does not match.

    Also a ``ValueError``: code written against earlier versions, which raised
    ``ValueError`` for some of these, keeps working.
    """

    def __str__(self) -> str:  # KeyError would show the message quoted, as a repr
        return str(self.args[0]) if self.args else ""


class SamplerError(MegaLMMError, FloatingPointError):
    """The sampler met a numerical failure (non-finite or not positive definite values)."""


class ConcurrencyError(MegaLMMError, RuntimeError):
    """A model was used from two threads at once."""


class RunDirectoryError(MegaLMMError, FileExistsError):
    """A ``run_dir`` holds another run (or other files) and may not be written to."""


class StoreError(MegaLMMError, OSError):
    """A run directory's saved files are damaged or missing; the message names the file."""


class PosteriorFunctionError(MegaLMMError, RuntimeError):
    """A user's posterior function (``functions=``) raised; the message names it."""
