"""Use cases (enroll, verify, identify, subjects, keys) and the runtime they share.

Services take a ``Session`` and flush; the request that calls them owns the
transaction. They return ``app.schemas`` models or raise ``AppError``s.
"""
