"""Components used only by the spec-layer tests (independent of the built-ins)."""
