"""How requests are sent on schedule: thread, asyncio and closed-loop user executors."""
