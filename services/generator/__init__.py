"""``fraudstream generate``: a synthetic card-transaction world with late labels and drift.

Modules, in the order a run uses them:
    config    what to generate (GeneratorConfig, --patterns and --drift parsing)
    catalog   static tables: MCCs, countries, currencies, channels
    world     the population of cards and merchants
    legit     legitimate spend (vectorized)
    patterns  fraud patterns
    drift     drift scenarios from an onset day
    labels    late, partial and noisy labels (the label policy lives here)
    build     puts the world together: generate(config) -> World
    writer    World -> the data-set directory (format: services.dataset)
    cli       main(argv)
"""
