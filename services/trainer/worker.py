"""The training worker process: ``python -m services.trainer.worker train``.

It is ``python -m shared.worker train`` with TensorFlow imported once in the parent: RQ forks a work horse per
job, and each fork then starts training at once instead of importing TensorFlow again (10-20 s on a busy CPU).
``shared.worker`` runs the same jobs (``services.trainer.jobs.run_training``), only slower to start.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    # Import only: no TensorFlow op runs (and so no thread pool starts) before RQ forks a work horse.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401  - what the plots use

    import services.trainer.task  # noqa: F401  - TensorFlow, Keras and the applications
    from shared.worker import main as worker_main

    worker_main(argv)


if __name__ == "__main__":
    main()
