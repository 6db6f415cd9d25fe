"""Train the house price model and pickle it: `python train.py [OUTPUT]` (default model.pkl)."""

import pickle
import sys
from pathlib import Path

import numpy as np
from linear_model import LinearModel

FEATURES = ["area_m2", "rooms"]
TRUE_WEIGHTS = np.array([2.5, 10.0])
TRUE_BIAS = 30.0


def train(seed: int = 0, samples: int = 200) -> LinearModel:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(30, 200, samples), rng.integers(1, 7, samples)])
    y = x @ TRUE_WEIGHTS + TRUE_BIAS + rng.normal(0, 1.0, samples)
    return LinearModel.fit(FEATURES, x, y)


def main(output: Path) -> None:
    model = train()
    with output.open("wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"weights={[round(w, 3) for w in model.weights]} bias={model.bias:.3f} -> {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "model.pkl")
