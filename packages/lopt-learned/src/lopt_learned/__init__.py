"""lopt_learned: see the package README."""

__all__: list[str] = []
