"""Not a component: a module without a ``Config`` model."""


def run(config: object, context: object) -> dict[str, object]:
    return {}
