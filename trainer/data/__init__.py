"""The data stage: find images, fix the splits, decode and cache them, batch them for the engine.

``scan`` checks every file decodes; ``splits`` fixes the holdout and folds; ``images`` is the one
decoder; ``cache``/``cache_files`` keep decoded, resized pixels on disk for every trial and
worker; ``transforms`` (the only albumentations module) resizes and augments; ``loader`` batches.
"""
