"""A design run: its validated settings (``config``), the task's support constraints (``constraints``),
where its stages execute (``executor``), the run itself, written once (``engine``), what it leaves
(``results``) and the run directory it writes (``report``, ``plots``)."""
