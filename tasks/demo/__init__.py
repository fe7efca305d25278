"""The built-in demo corpus (stage ``demo``): generated opinion clips with known sentiment.

``corpus`` plans and renders the corpus (the stage's entry point is ``corpus.generate``);
``sentences``, ``speech`` and ``face`` render a clip's text, audio and video from the noisy
views of its hidden sentiment (``views``).
"""
