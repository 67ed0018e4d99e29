"""``handforge train guidance``: AttentionHand's guidance module, trained by the image engine's
``train`` module (this package only gives it the name the paper uses)."""
