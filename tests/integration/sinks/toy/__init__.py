"""A toy kind of sink, for the contract tests: a new kind is a package like this one (an executor
and a ``KIND``) plus one line that registers it (``registry.register(toy.KIND)``, or one entry of
``sinks.registry.BUILT_IN`` for a shipped kind)."""
