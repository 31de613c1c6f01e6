"""``python -m shared.worker QUEUE [QUEUE...]``: an RQ worker configured from the settings.

The same entry point runs on a laptop, in docker-compose and on a GPU node.
"""

from __future__ import annotations

import argparse
import logging

from rq import Worker

from shared.logs import configure_logging
from shared.queue import QueueName, get_queue, redis_connection
from shared.settings import get_settings

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sporeprint RQ worker")
    parser.add_argument("queues", nargs="+", choices=[name.value for name in QueueName])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    connection = redis_connection(settings)
    queues = [get_queue(QueueName(name), connection) for name in args.queues]
    logger.info("worker listening on %s at %s", args.queues, settings.redis_url)
    Worker(queues, connection=connection).work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
