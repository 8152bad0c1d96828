"""Suppression control (issue 18, part 3): our customer-managed suppression list, fed and read.

    arm          the list in Azure Resource Manager, through ``azure-mgmt-communication`` (one address resource a
                 recipient, keyed by a deterministic ``addressId``; lookups by email fall back to a listing)
    records      what we added and who asked to remove what (a partition of the summary table; no addresses)
    sync         the timer: hard bounces from the logs into the list, idempotently
    sendability  the use case behind ``GET /api/recipients/{address}/sendability``
    models       the answers' pydantic models

Addresses are personal data: they reach ARM (the list holds them) and KQL (obfuscated literals), never a log line.
"""
