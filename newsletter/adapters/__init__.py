"""Mail adapters: how a message leaves. Each module is one way out; ``base`` is the contract.

The loop that drives them (claims, pacing, retries, stopping) is ``newsletter.sendloop``.
"""

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    DeliveryError,
    Outcome,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    Status,
    TransientError,
    adapter_names,
    load_adapter,
)

__all__ = ["Adapter", "AdapterSettings", "DeliveryError", "Outcome", "OutcomeUnknown",
           "PermanentError", "RateLimited", "Status", "TransientError", "adapter_names",
           "load_adapter"]
