"""The SPARTA method as pure, standard-library Python: no torch, no files, no jobs.

``types`` (records), ``settings`` (the ``plan`` and ``rate`` config sections and profiles), ``matchmaking``
(spec section 3), ``judging`` (section 4), ``ratings`` (section 5) and ``preferences`` (section 6).
"""
