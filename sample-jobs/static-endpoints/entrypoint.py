import csv
from pathlib import Path

DATA = Path(__file__).parent / "data" / "cities.data"


class StaticFiles:
    def perform(self, city: str) -> int:
        """
        Population of a city listed in data/cities.data.
        :param city: City name, e.g. Tokyo.
        """
        with DATA.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["city"].lower() == city.lower():
                    return int(row["population"])
        raise ValueError(f"unknown city: {city}")

    def docs_input_example(self) -> dict:
        return {"city": "Tokyo"}

    def static_endpoints(self) -> dict:
        return {
            "/readme": "README.md",
            "/cities.csv": ("data/cities.data", "text/csv"),
            "/files": "public",
        }
