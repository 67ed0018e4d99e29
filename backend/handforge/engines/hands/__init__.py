"""The hands engine: the hand models of ``handforge.hands`` as job kinds (``hand_model``, ``forward_hands``)."""
