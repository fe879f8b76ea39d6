"""python -m mdeas.synth out=PATH num_samples=N image_size=S seed=K: write a generated canonical dataset zip."""

import hydra
from omegaconf import DictConfig

from mdeas.cli import exit_on_data_error, run_app
from mdeas.config_values import file_names
from mdeas.synth.generate import generate


@hydra.main(version_base="1.3", config_path="../../conf", config_name="synth")
def main(cfg: DictConfig) -> None:
    """Generate the dataset that conf/synth.yaml and the overrides describe (see `mdeas.synth.generate`)."""
    with exit_on_data_error(TypeError, ValueError):
        file_names(cfg, "out")
        options = {k: v for k, v in cfg.items() if k not in ("out", "num_samples", "workers")}
        path = generate(cfg.out, cfg.num_samples, workers=cfg.workers, **options)
    print(f"wrote {cfg.num_samples} samples to {path}")


if __name__ == "__main__":
    run_app(main, sigterm_as_ctrl_c=True)
