"""Labelled synthetic renders: scene samplers (``sampler``), labels (``labels``), dataset writers
(``writers``) and the export loop (``run``), driven by ``handforge export SPEC`` (``spec``); scale-out
over worker processes or Ray (``shards``: the driver; ``worker``; ``local_pool``; ``ray_pool``)."""
