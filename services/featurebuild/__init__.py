"""The offline feature build on two processes: the card half here, the merchant half in
a child process (:mod:`.build`, :mod:`.stage`). Import ``build_features`` from
:mod:`services.featurebuild.build`; this package imports nothing itself, so the child
starts without NumPy."""
