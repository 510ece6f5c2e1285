"""``ebbtide audit replay``: re-derive the decision log from the worker's inputs and compare.

:mod:`.reading` reads the topics to their end, :mod:`.schedule` says in which order to feed the
inputs (from the recorded decisions), :mod:`.policies` finds the recorded policy versions,
:mod:`.comparing` diffs the replayed decisions with the recorded ones, and :mod:`.replaying`
runs it all with the worker's own processor.
"""

from ebbtide.tools.replay.comparing import Difference
from ebbtide.tools.replay.reading import ReplayError
from ebbtide.tools.replay.replaying import Options, Result, Steps, replay

__all__ = ["Difference", "Options", "ReplayError", "Result", "Steps", "replay"]
