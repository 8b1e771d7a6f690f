"""lightning-sr: small and fast super-resolution networks with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("if"):
        OmegaConf.register_new_resolver("if", lambda cond, a, b: a if cond else b)


_register_resolvers()
