"""Labelled synthetic renders: scene samplers (``sampler``), labels (``labels``), the dataset folder
(``folder``: layout, claim, lock, finished samples), one sample written and read back (``samples``), the
aggregate files (``coco``, ``interhand_format``, ``card``, streamed by ``streamed_json``) and the export loop
(``run``), driven by ``handforge export SPEC`` (``spec``); scale-out over worker processes or Ray
(``shards``: the driver; ``worker``; ``local_pool``; ``ray_pool``)."""
