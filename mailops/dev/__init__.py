"""The dev wing: what exists for tests and the demo, never for production.

- ``devserver/``: a real local mail server (Dovecot, an SMTP submission server, an OAuth
  token service) on 127.0.0.1.
- ``demo/``: the demo company (Northwind Homes) and every demo step: seed, connect, send.
- ``stand_ins.py``: the stand-ins for the user's phone and browser during a local sign-in.
- ``cli.py``: ``mailops devserver ...`` and ``mailops demo ...``.

Product modules never import this package (``tests/test_layout.py`` fails if one does); it
imports the product freely. The fault points tests use live in the product
(``mailops/faults.py``), since the code they interrupt is product code.
"""
