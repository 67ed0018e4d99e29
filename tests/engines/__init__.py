"""Engines that exist only for the tests; ``handforge serve --engine-package tests.engines`` loads them."""
