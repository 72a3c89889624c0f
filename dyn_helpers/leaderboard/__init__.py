"""The leaderboard: every method of the book on one common task, with one harness (`board`).

The boards and their static networks are in `static`; each group of methods registers its entries
in its own module. `python -m dyn_helpers.tools.leaderboard` (`make leaderboard`) makes the records.
"""

from dyn_helpers.leaderboard.board import Entry, Point, Task, choose, entry, front_at, point, register_board

__all__ = ["Entry", "Point", "Task", "choose", "entry", "front_at", "point", "register_board"]
