"""The midbrain wire contract: topics, typed messages and the codec.

Every tier (edge, hub, cloud_bridge, simulators) imports this package; it imports
none of them. The human-readable version is ``docs/protocol.md``.
"""

from contract.codec import DecodeError, decode, encode
from contract.topics import Topic, TopicError, TopicKind

from contract.messages import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "DecodeError", "Topic", "TopicError", "TopicKind", "decode", "encode"]
