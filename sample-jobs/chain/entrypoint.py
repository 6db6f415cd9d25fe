from trackside_wrapper import call_job


class Doubler:
    def perform(self, numbers: list[float], factor: float = 2) -> dict[str, float]:
        """
        Sum numbers with the adder job (called through the gateway), then scale the sum.
        :param numbers: Passed on to adder.
        :param factor: Multiplies adder's sum.
        """
        total = call_job("adder", payload={"numbers": numbers})
        return {"sum": total, "scaled": total * factor}

    def docs_input_example(self) -> dict:
        return {"numbers": [40, 2], "factor": 2}
