"""Model training: the recipe (:mod:`.training`), its split and label policy (:mod:`.split`),
evaluation and manifest (:mod:`.report`), and the ``fraudstream train`` command (:mod:`.train_cli`).
"""
