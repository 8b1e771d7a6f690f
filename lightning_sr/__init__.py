"""lightning-sr: small and fast super-resolution networks with PyTorch Lightning and Hydra."""

from lightning_sr.errors import ConfigError

__version__ = "0.1.0"


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("if"):
        OmegaConf.register_new_resolver("if", lambda cond, a, b: a if cond else b)
    if not OmegaConf.has_resolver("lsr_positive"):
        OmegaConf.register_new_resolver("lsr_positive", _positive)
    if not OmegaConf.has_resolver("lsr_step"):
        OmegaConf.register_new_resolver("lsr_step", _step_at)
    if not OmegaConf.has_resolver("lsr_first_dir"):
        OmegaConf.register_new_resolver("lsr_first_dir", _first_dir)


def _first_dir(*candidates: str) -> str:
    """``${lsr_first_dir:A,B}``: the first candidate folder that exists, else the first (errors then name it)."""
    from pathlib import Path

    return next((c for c in candidates if Path(str(c)).expanduser().is_dir()), candidates[0])


def _positive(value, key: str, what: str):
    """``${lsr_positive:${trainer.devices},trainer.devices,GPUs per node}``: the value, when a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}={value} does not say how many {what} to ask for; set {key}=N (e.g. {key}=4)")
    return value


def _step_at(fraction, max_steps) -> int:
    """``${lsr_step:0.75,${trainer.max_steps}}``: the step at that fraction of the run (an even number: SRGAN makes
    two optimiser steps per batch), so one config serves the full run and its smoke variant."""
    if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(f"lsr_step:{fraction},...: give a fraction in [0, 1] of trainer.max_steps")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 4:
        raise ConfigError(f"trainer.max_steps={max_steps}: a step at {fraction} of the run needs a positive step "
                          f"budget of at least 4; set trainer.max_steps=N")
    return min(2 * int(fraction * max_steps // 2), max_steps - 2)  # even, and a batch before the end


_register_resolvers()


def _quiet_known_warnings() -> None:
    import warnings

    # conf/hydra/launcher/submitit_local.yaml is complete on its own (it sets the launcher's _target_ and every key);
    # sharing its name with hydra-submitit-launcher's own config makes Hydra 1.3 print a deprecation notice.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_local' is validated against ConfigStore",
                            category=UserWarning)


_quiet_known_warnings()
