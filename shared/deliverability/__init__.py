"""Deliverability control: send volume against the ACS quota (``quota``), sender reputation (``health``) and
results per mailbox provider (``providers``). Use cases over an :class:`~shared.insights.Insights`; their KQL is
built by :mod:`shared.kql.deliverability`, their models live in :mod:`shared.deliverability.models`."""
