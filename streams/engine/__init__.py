"""The engine: a pure fold of a subject's events, clock ticks and receipts into records,
deadlines and decisions.

``stamping.apply_event`` folds one lifecycle event in, ``firing.fire_due`` turns passed
deadlines into deletion commands (and passed duties into overdue decisions),
``receipts.apply_receipt`` records a store's answer. Each returns a new
:class:`~streams.engine.model.SubjectState` and what was decided (``model.Outcome``); none reads
the wall clock or does I/O, and nothing here imports faust, kafka, psycopg2 or ebbtide, so the
same events under the same policy give the same decisions, byte for byte.

- ``model``: the state (a subject's facts, record copies, duties) and an outcome;
- ``events``, ``facts``: the events in, and the part of each that moves a clock or a right;
- ``clocks``, ``rights``, ``judging``: what the policy says of a record given the facts;
- ``stamping``, ``firing``, ``receipts``: the three steps of the fold;
- ``decisions``, ``answers``, ``certificate``: what the steps decide, answer and certify;
- ``snapshot``: a state to and from plain JSON-able data (tables, changelogs);
- ``explain``, ``overdue``, ``diff``: read-only views for the tools.
"""
