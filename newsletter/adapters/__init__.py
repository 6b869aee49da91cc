"""Mail adapters: how a message leaves. ``base`` owns the loop; each module is one way out."""

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
    adapter_names,
    load_adapter,
)

__all__ = ["Adapter", "AdapterSettings", "DeliveryError", "OutcomeUnknown", "PermanentError",
           "RateLimited", "TransientError", "adapter_names", "load_adapter"]
