"""Push subscriptions (issue 9, item 6): webhooks told when a message, or a matching recipient, becomes final.

``subscriptions`` stores subscriptions and the outbox in Table Storage, ``callbacks`` holds the callback URL
rule and the signed HTTP POST, ``delivery`` matches state changes to subscriptions and delivers from the outbox.
"""
