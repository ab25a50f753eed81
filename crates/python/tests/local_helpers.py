"""A local module (not installed anywhere): the sandbox can only get these by value."""

import dataclasses

SCALE = 10


def scale(x):
    return x * SCALE


@dataclasses.dataclass
class Point:
    x: int
    y: int

    def norm1(self):
        return abs(self.x) + abs(self.y)


class LocalError(Exception):
    """An exception type defined outside the builtins."""


def uses_helper(v):
    return scale(v) + 1
