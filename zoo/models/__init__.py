"""Built-in models, one file per paradigm; `zoo.registry` imports each module, which registers itself."""
