"""Explore a dataset before training on it (``trainer explore``).

- ``probe``: each file's header facts, content hash and perceptual hash, over a process pool;
- ``duplicates``: exact and near-duplicate pairs, label conflicts and holdout leakage;
- ``stats``: the per-image, per-class and file-property tables and the run's metrics;
- ``figures``, ``gallery``: charts, thumbnail grids and pair galleries as PNG;
- ``artifacts``: the folder of tables and pictures;
- ``findings``: the findings kept per data digest, and ``warning_for`` (training's warning);
- ``run``: ``explore(config)``, which ties these together and logs the ``explore`` run.

Only ``warning_for`` is imported here, so that ``trainer fit`` and ``studies run`` can call it
cheaply; ``explore`` lives in ``trainer.explore.run``.
"""

from trainer.explore.findings import warning_for

__all__ = ["warning_for"]
