"""What is called: target resolution and registry, function targets, the HTTP client and target.

A plug-in builds its targets from :class:`TargetContext` and returns :class:`Target`;
both, and :class:`JsonBody` for pre-encoded payloads, are public here.
"""

from harness.targets.base import JsonBody, Target, TargetContext, TargetError, TargetFactory, flags_of, json_body

__all__ = ["Target", "TargetContext", "TargetError", "TargetFactory", "JsonBody", "json_body", "flags_of"]
