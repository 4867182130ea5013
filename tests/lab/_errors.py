"""The lab's own errors, shared by the Lab that raises them and the control API that answers with them."""

from __future__ import annotations


class LabError(RuntimeError):
    """The lab could not be built as asked."""


class UnknownComponent(LabError, KeyError):
    """A host, proxy or relay name the lab does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
