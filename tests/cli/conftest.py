"""Fixtures of the deployment tests (tests/cli): the stack of ``tests.cli.deploy_stack``."""

from tests.cli.deploy_stack import sandbox, stack, worker_env

__all__ = ["sandbox", "stack", "worker_env"]
