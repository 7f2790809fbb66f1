"""Evaluation suites: named, versioned sets of tasks that every optimizer is scored on.

A suite lists registered tasks by name, each with the kind of problem it is
("image_mlp", "lm", "tabular", ...), the horizons (inner steps) it is run at and
the number of seeds. Packages and plugins register suites like any component
(`@CATALOG.suite()`, or the `lopt_register_suites` hook); `lopt_core.get_suite`
builds one by name. The version names the suite's contents: change the tasks,
horizons or seeds and bump it, so that cached baseline results of another
version are never mistaken for this one's (`lopt_outer.bench` keys its cache by
it).

Example:
  >>> s = Suite("tiny", "1", (SuiteTask("QuadraticTask", "quadratic"),), horizons=(10,), seeds=1)
  >>> s.task_names, s.kinds
  (('QuadraticTask',), ('quadratic',))
"""

from __future__ import annotations

import re

from lopt_core.component import component

__all__ = ["Suite", "SuiteTask"]

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@component
class SuiteTask:
    """One task of a suite.

    Attributes:
      name: the registered task name (`lopt_core.get_task(name)` builds it).
      kind: the kind of problem, for grouping scores ("image_mlp", "conv",
        "autoencoder", "vae", "lm", "tabular", "synthetic", "flax", ...).
    """

    name: str
    kind: str

    def __post_init__(self) -> None:
        for field in ("name", "kind"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise ValueError(f"SuiteTask: {field} must be a non-empty string, got {value!r}.")


@component
class Suite:
    """A named, versioned set of evaluation tasks, horizons and seeds.

    Attributes:
      name: the suite's name.
      version: what the cache of baseline results is keyed by; letters, digits,
        ".", "_" and "-".
      tasks: the `SuiteTask`s, each task name once.
      horizons: inner-step counts each optimizer is run for, increasing.
      seeds: seeds per task and horizon (seeds 0 .. seeds - 1).
      num_evals: evaluations of the train, validation and test losses along a
        run of each horizon, evenly spaced (step 0 and the last step included:
        `num_evals + 1` points when it divides the horizon).
      eval_batches: batches averaged for each validation or test loss.
      description: one line for `lopt list suites`.

    Raises:
      ValueError: an empty or duplicated task list, horizons that are not
        increasing positive integers, a bad version, seeds or eval settings.
    """

    name: str
    version: str
    tasks: tuple[SuiteTask, ...]
    horizons: tuple[int, ...] = (200, 1000, 5000)
    seeds: int = 3
    num_evals: int = 20
    eval_batches: int = 4
    description: str = ""

    def __post_init__(self) -> None:
        owner = f"Suite {self.name!r}"
        if not isinstance(self.version, str) or not _VERSION.match(self.version):
            raise ValueError(
                f"{owner}: version must be letters, digits, '.', '_' or '-', got {self.version!r}."
            )
        tasks = tuple(self.tasks)
        if not tasks or not all(isinstance(t, SuiteTask) for t in tasks):
            raise ValueError(f"{owner}: tasks must be a non-empty sequence of SuiteTask.")
        names = [t.name for t in tasks]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"{owner}: tasks {dups} appear more than once; list each task once.")
        horizons = tuple(self.horizons)
        if (
            not horizons
            or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in horizons)
            or list(horizons) != sorted(set(horizons))
        ):
            raise ValueError(
                f"{owner}: horizons must be increasing positive integers, got {self.horizons!r}."
            )
        for field, minimum in (("seeds", 1), ("num_evals", 1), ("eval_batches", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(
                    f"{owner}: {field} must be an integer >= {minimum}, got {value!r}."
                )
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "horizons", horizons)

    @property
    def task_names(self) -> tuple[str, ...]:
        """The task names, in the suite's order."""
        return tuple(t.name for t in self.tasks)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct kinds of task, in order of first appearance."""
        return tuple(dict.fromkeys(t.kind for t in self.tasks))

    def subset(
        self,
        task_names: tuple[str, ...] | None = None,
        horizons: tuple[int, ...] | None = None,
        seeds: int | None = None,
    ) -> Suite:
        """A smaller suite: some of its tasks, other horizons or fewer seeds; same name and version.

        A task's results do not depend on the other tasks, and the baseline cache
        is keyed by task, horizons and seeds too, so a subset shares the cache.

        Raises:
          ValueError: a task name that is not in the suite (the message lists them).
        """
        tasks = self.tasks
        if task_names is not None:
            missing = [n for n in task_names if n not in self.task_names]
            if missing:
                raise ValueError(
                    f"Suite {self.name!r} has no tasks {missing}; its tasks are {list(self.task_names)}."
                )
            tasks = tuple(t for t in self.tasks if t.name in task_names)
        return Suite(
            self.name,
            self.version,
            tasks,
            tuple(horizons) if horizons is not None else self.horizons,
            self.seeds if seeds is None else seeds,
            self.num_evals,
            self.eval_batches,
            self.description,
        )
