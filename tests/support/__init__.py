"""Support code shared by the tests: builders of hand-made trajectory stores (``synthetic``)."""
