"""The ``dashboard`` command: a web page and JSON API over the state topics.

``cache`` keeps the current records in memory, ``follower`` fills it from the
state topics in a background thread, and ``app`` serves the pages, the API and
server-sent events from it.
"""
