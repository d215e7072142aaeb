"""Fixtures of the deployment tests (tests/cli): the stack of ``tests.cli.deploy_stack``."""

from tests.cli.deploy_stack import sandbox, worker_env

__all__ = ["sandbox", "worker_env"]
