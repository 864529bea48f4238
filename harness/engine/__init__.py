"""How requests are sent on schedule: the :class:`~harness.engine.base.Executor` contract
and its implementations (threads, asyncio with callbacks, closed-loop users)."""
