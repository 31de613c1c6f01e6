"""The trainer: training job specs on the RQ queue ``train``, the training worker, and the model registry.

Map: ``shared/training.py`` (TrainingJobSpec, SweepSpec: the contract) -> ``submission`` (pin the manifest
version, refuse what cannot be split) -> ``jobs`` (``submit_training`` onto the queue, ``run_training`` the job
function; state, logs, cancel, requeue, sweeps) -> ``task`` (plan -> ``cache`` -> ``input`` tf.data -> ``model``
-> fit with per-epoch checkpoints -> ``evaluation`` -> artifacts + ``shared.registry`` card) and ``promotion``.
``worker``: ``python -m services.trainer.worker train`` runs an RQ worker with TensorFlow preloaded.
``presets`` give ready specs. API: ``services.trainer.main:app`` (jobs, sweeps, models, presets).
"""
