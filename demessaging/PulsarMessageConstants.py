"""DASF's module name for its message constants: :mod:`demessaging.dasf.constants`."""  # noqa: N999

from .dasf.constants import MessageType, PropertyKeys

__all__ = ["MessageType", "PropertyKeys"]
