import math
import statistics


class Statistics:
    def perform(self, values: list[float]) -> dict[str, float]:
        """
        Summarise a sample.
        :param values: The sample, at least one value.
        :return: Count, mean, median and standard deviation.
        """
        if not values:
            raise ValueError("values must not be empty")
        return {
            "count": len(values),
            "mean": statistics.fmean(values),
            "median": statistics.median(values),
            "stdev": statistics.pstdev(values),
        }

    def percentile(self, values: list[float], q: float = 50) -> float:
        """
        The q-th percentile of the sample (linear interpolation).
        :param values: The sample, at least one value.
        :param q: Percentile between 0 and 100.
        """
        if not values:
            raise ValueError("values must not be empty")
        if not 0 <= q <= 100:
            raise ValueError(f"q must lie between 0 and 100, got {q}")
        ordered = sorted(values)
        position = (len(ordered) - 1) * q / 100
        low, high = math.floor(position), math.ceil(position)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def histogram(self, values: list[float], bins: int = 4) -> dict[str, list[float] | list[int]]:
        """
        Count the values falling into equally wide bins.
        :param values: The sample, at least one value.
        :param bins: Number of bins, at least 1.
        """
        if not values:
            raise ValueError("values must not be empty")
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        low, high = min(values), max(values)
        width = (high - low) / bins or 1.0
        counts = [0] * bins
        for value in values:
            counts[min(int((value - low) / width), bins - 1)] += 1
        return {"edges": [low + width * i for i in range(bins + 1)], "counts": counts}

    def auxiliary_endpoints(self) -> dict:
        return {"/percentile": self.percentile, "/histogram": self.histogram}

    def docs_input_examples(self) -> dict:
        sample = [2, 4, 4, 4, 5, 5, 7, 9]
        return {
            "/perform": {"values": sample},
            "/percentile": {"values": sample, "q": 75},
            "/histogram": {"values": sample, "bins": 4},
        }
