"""The trainer: training job specs on the RQ queue ``train``, the training worker, and the model registry.

Map: ``shared/training.py`` (TrainingJobSpec, SweepSpec: the contract) -> ``submission`` (pin the manifest
version, refuse what cannot be split) -> ``jobs`` (RQ queue, state, logs, cancel, requeue) -> ``worker``
(RQ job function; ``python -m services.trainer.worker train`` runs a worker with TensorFlow preloaded) ->
``task`` (plan -> ``cache`` -> ``input`` tf.data -> ``model`` -> fit with per-epoch checkpoints -> evaluate ->
artifacts + ``shared.registry`` card) and ``promotion``. ``presets`` and ``demo`` give ready specs;
``synthetic`` writes a harvested manifest of fixtureweb species for tests, benchmarks and demos.
API: ``services.trainer.main:app`` (jobs, sweeps, models, presets).
"""
