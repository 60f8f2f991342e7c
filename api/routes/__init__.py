"""The API's routes, one module per resource: ``cases`` (start, events, status),
``inbox`` (packets and acknowledgements), ``documents``, ``subscriptions``
(notifications)."""
