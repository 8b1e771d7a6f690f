"""lightning-sr: small and fast super-resolution networks with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("if"):
        OmegaConf.register_new_resolver("if", lambda cond, a, b: a if cond else b)


_register_resolvers()


def _quiet_known_warnings() -> None:
    import warnings

    # conf/hydra/launcher/submitit_local.yaml is complete on its own (it sets the launcher's _target_ and every key);
    # sharing its name with hydra-submitit-launcher's own config makes Hydra 1.3 print a deprecation notice.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_local' is validated against ConfigStore",
                            category=UserWarning)


_quiet_known_warnings()
