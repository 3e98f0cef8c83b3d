"""A component module that fails to import."""

raise RuntimeError("this component is broken on purpose")
