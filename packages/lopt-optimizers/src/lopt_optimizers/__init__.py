"""lopt_optimizers: see the package README."""

__all__: list[str] = []
